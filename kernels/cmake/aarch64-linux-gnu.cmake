# Cross-compiling the kernels for 64-bit Arm Linux with Debian's g++-aarch64-linux-gnu:
#
#   cmake -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=kernels/cmake/aarch64-linux-gnu.cmake \
#         -DSPE_BUILD_PYTHON=OFF -DSPE_BUILD_TESTS=ON
#   cmake --build build-arm64 -j2
#   qemu-aarch64 -L /usr/aarch64-linux-gnu build-arm64/spe_kernel_tests --quick
#
# SPE_CROSS_TRIPLE picks another GNU toolchain (e.g. aarch64-none-linux-gnu); SPE_CROSS_SYSROOT
# the target's root (libraries and headers); Debian's multiarch cross packages install it in
# /usr/<triple>. When qemu-aarch64 is found, it becomes the emulator CMake uses to run target
# binaries (try_run, add_test).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(SPE_CROSS_TRIPLE "aarch64-linux-gnu" CACHE STRING "GNU triple of the aarch64 cross toolchain")
set(SPE_CROSS_SYSROOT "/usr/${SPE_CROSS_TRIPLE}" CACHE PATH "Root of the aarch64 target's files")

set(CMAKE_C_COMPILER "${SPE_CROSS_TRIPLE}-gcc")
set(CMAKE_CXX_COMPILER "${SPE_CROSS_TRIPLE}-g++")

# Libraries, headers and packages come from the target root only; programs (the build tools)
# from the host.
set(CMAKE_FIND_ROOT_PATH "${SPE_CROSS_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(SPE_QEMU_AARCH64 qemu-aarch64)
if(SPE_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR "${SPE_QEMU_AARCH64};-L;${SPE_CROSS_SYSROOT}")
endif()
