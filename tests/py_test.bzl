"""salvo_py_test: a Python unittest script run by tests/run_py_test.sh.

Usage (in any BUILD file):
    load("//tests:py_test.bzl", "salvo_py_test")
    salvo_py_test(name = "delivery_test", script = "delivery_test.py",
                  data = ["//engine:salvo"])
The script runs from the runfiles root with /usr/bin/python3, can import
tests.lib.peers and start tests/fakes/*, and finds data files by their
workspace path (peers.runfile("engine/salvo")).
"""

def salvo_py_test(name, script, data = [], size = "medium", tags = [], **kwargs):
    native.sh_test(
        name = name,
        srcs = ["//tests:run_py_test.sh"],
        args = ["$(rootpath %s)" % script],
        data = [script, "//tests:peer_lib"] + data,
        size = size,
        tags = tags,
        **kwargs
    )
