// Which ISA variants this build compiled in. CMake defines SPE_HAVE_<ISA> for the library's own
// sources only (each variant is a translation unit compiled with its ISA's flags, left out where
// the target cannot build it), so only those sources may include this header.
#ifndef SPE_ISA_COMPILED_H_
#define SPE_ISA_COMPILED_H_

#include "isa.h"

namespace spe {

// fn(IsaTag<isa>{}) if this build compiled isa in, else a value-initialised result: the one
// switch that names a variant's symbols, so a family's registry never refers to one the build
// left out.
template <class Fn>
auto with_compiled_isa(Isa isa, Fn&& fn) -> decltype(fn(IsaTag<Isa::scalar>{})) {
  switch (isa) {
    case Isa::scalar: return fn(IsaTag<Isa::scalar>{});
#ifdef SPE_HAVE_AVX2
    case Isa::avx2: return fn(IsaTag<Isa::avx2>{});
#endif
#ifdef SPE_HAVE_AVX512
    case Isa::avx512: return fn(IsaTag<Isa::avx512>{});
#endif
#ifdef SPE_HAVE_NEON
    case Isa::neon: return fn(IsaTag<Isa::neon>{});
#endif
    default: return {};
  }
}

}  // namespace spe
#endif  // SPE_ISA_COMPILED_H_
