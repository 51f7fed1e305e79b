// The calling thread's last error message, shared by every op so that spe_last_error() reports
// whichever call failed last (sparse conv, depthwise conv, ...), and the guard every extern "C"
// entry point runs its body in: no C++ exception may cross the C API (an app or a TVM module
// calling through it cannot catch one; it would terminate the process).
#ifndef SPE_COMMON_ERROR_H_
#define SPE_COMMON_ERROR_H_

#include <exception>
#include <new>
#include <stdexcept>
#include <string>

#include "spe/spe.h"

namespace spe {

// Records msg as this thread's last error and returns s: `return fail(SPE_ERR_..., "...");`.
// Never throws: the message goes into a fixed per-thread buffer (truncated if longer), so it
// works inside a handler for std::bad_alloc too.
spe_status fail(spe_status s, const std::string& msg) noexcept;
spe_status fail(spe_status s, const char* msg) noexcept;
const char* last_error() noexcept;
// fail(s, "<what>: <msg>").
spe_status fail_in(spe_status s, const char* what, const char* msg) noexcept;

// Runs body() (returning spe_status) and turns any exception into a status with a message:
// std::bad_alloc / std::length_error -> SPE_ERR_OUT_OF_MEMORY, anything else -> SPE_ERR_INTERNAL. `what` names the
// entry point in the message.
template <class F>
spe_status guarded(const char* what, F&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail_in(SPE_ERR_OUT_OF_MEMORY, what, "out of memory");
  } catch (const std::length_error&) {  // a container asked for more than it can ever hold
    return fail_in(SPE_ERR_OUT_OF_MEMORY, what, "out of memory (allocation too large)");
  } catch (const std::exception& e) {
    return fail_in(SPE_ERR_INTERNAL, what, e.what());
  } catch (...) {
    return fail_in(SPE_ERR_INTERNAL, what, "unknown exception");
  }
}

}  // namespace spe
#endif  // SPE_COMMON_ERROR_H_
