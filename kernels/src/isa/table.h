// Building a kernel family's per-ISA table from the family's list (spmm/spmm_list.h,
// dwconv/dwconv_list.h) at compile time, and counting list lines for the registries' checks.
#ifndef SPE_ISA_TABLE_H_
#define SPE_ISA_TABLE_H_

#include <cstddef>
#include <type_traits>
#include <utility>

#include "isa.h"

namespace spe {

template <class F, int... I>
void for_each_index(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

// Traits V's table of a family whose list has N lines: Table{} with its isa and vector width,
// then fill(table, std::integral_constant<int, i>{}) for every line i (fill keeps V's lines,
// with `if constexpr`, so no other ISA's kernel is instantiated with V's flags). Built once.
template <class Table, class V, int N, class Fill>
const Table* isa_table(Fill fill) {
  static const Table table = [&] {
    Table t{};
    constexpr const char* kName = isa_name(V::kIsa);  // a constant: no call into isa.h's code
    t.isa = kName;
    t.width = V::kWidth;
    for_each_index([&](auto i) { fill(t, i); }, std::make_integer_sequence<int, N>{});
    return t;
  }();
  return &table;
}

// Lines of a list that satisfy pred, at compile time.
template <class T, std::size_t N, class Pred>
constexpr int count_listed(const T (&list)[N], Pred pred) {
  int n = 0;
  for (const T& line : list) n += pred(line) ? 1 : 0;
  return n;
}

}  // namespace spe
#endif  // SPE_ISA_TABLE_H_
