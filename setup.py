"""Build glue for `pip install .`: the C extension, plus the worker program, which is compiled
with the same compiler and placed inside the package (shmaccel/shmaccel-worker)."""

import os
import re
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

COMMON = ["src/errors.c", "src/dtype.c", "src/validate.c", "src/time.c", "src/fault.c",
          "src/shm.c", "src/sock.c", "src/paths.c"]
CLIENT = COMMON + ["src/client.c", "src/client_block.c", "src/client_req.c"]
WORKER = COMMON + ["src/kernels.c", "src/guard.c", "src/pool.c", "src/session.c",
                    "src/worker_state.c", "src/worker_main.c"]
CFLAGS = ["-std=c11", "-D_GNU_SOURCE", "-O3", "-Wall", "-Wextra"]


def version():
    """The version, kept in one place: SA_VERSION_STRING in include/shmaccel.h (the extension
    exports it as shmaccel.__version__)."""
    with open("include/shmaccel.h") as f:
        match = re.search(r'^#define SA_VERSION_STRING "([^"]+)"', f.read(), re.M)
    if match is None:
        raise RuntimeError("include/shmaccel.h defines no SA_VERSION_STRING")
    return match.group(1)


class BuildExtWithWorker(build_ext):
    """build_ext that also links src/ into the shmaccel-worker executable."""

    def run(self):
        super().run()
        temp = os.path.join(self.build_temp, "worker")
        objects = self.compiler.compile(WORKER, output_dir=temp, include_dirs=["include", "src"],
                                        extra_postargs=CFLAGS)
        self.compiler.link_executable(objects, "shmaccel-worker", output_dir=temp,
                                      extra_postargs=["-pthread", "-lrt"])
        built = os.path.join(temp, "shmaccel-worker")
        targets = [os.path.join(self.build_lib, "shmaccel")]
        if self.inplace:
            targets = [os.path.join("pyshim", "shmaccel")]
        for target in targets:
            os.makedirs(target, exist_ok=True)
            shutil.copy2(built, os.path.join(target, "shmaccel-worker"))


setup(
    version=version(),
    ext_modules=[
        Extension(
            "shmaccel._shmaccel",
            sources=CLIENT + ["pyshim/ext/module.c", "pyshim/ext/block.c", "pyshim/ext/client.c",
                              "pyshim/ext/pending.c"],
            include_dirs=["include", "src", "pyshim/ext"],
            extra_compile_args=CFLAGS,
            extra_link_args=["-pthread", "-lrt"],
        )
    ],
    cmdclass={"build_ext": BuildExtWithWorker},
)
