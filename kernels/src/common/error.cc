// Thread-local last error (see error.h). A fixed buffer, not a std::string: recording an error
// must not allocate (it runs when an allocation has just failed).
#include "error.h"

#include <cstdio>
#include <cstring>

namespace spe {
namespace {
constexpr size_t kMaxMessage = 1024;
thread_local char g_last_error[kMaxMessage] = "";
}  // namespace

spe_status fail(spe_status s, const char* msg) noexcept {
  std::snprintf(g_last_error, kMaxMessage, "%s", msg ? msg : "");
  return s;
}

spe_status fail(spe_status s, const std::string& msg) noexcept { return fail(s, msg.c_str()); }

spe_status fail_in(spe_status s, const char* what, const char* msg) noexcept {
  std::snprintf(g_last_error, kMaxMessage, "%s: %s", what, msg ? msg : "");
  return s;
}

const char* last_error() noexcept { return g_last_error; }

}  // namespace spe
