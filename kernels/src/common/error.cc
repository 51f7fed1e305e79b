// Thread-local last error (see error.h).
#include "error.h"

#include <utility>

namespace spe {
namespace {
thread_local std::string g_last_error;
}  // namespace

spe_status fail(spe_status s, std::string msg) {
  g_last_error = std::move(msg);
  return s;
}

const char* last_error() { return g_last_error.c_str(); }

}  // namespace spe
