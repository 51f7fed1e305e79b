// The calling thread's last error message, shared by every op so that spe_last_error() reports
// whichever call failed last (sparse conv, depthwise conv, ...).
#ifndef SPE_COMMON_ERROR_H_
#define SPE_COMMON_ERROR_H_

#include <string>

#include "spe/spe.h"

namespace spe {

// Records msg as this thread's last error and returns s: `return fail(SPE_ERR_..., "...");`
spe_status fail(spe_status s, std::string msg);
const char* last_error();

}  // namespace spe
#endif  // SPE_COMMON_ERROR_H_
