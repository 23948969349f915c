"""The ``ntk-bayes`` command drops the CPU loader's false alarm from the native log and
passes everything else on (ntk_bayes/_native_log.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

# 40 of the loader's lines (each ~3 KB, as jaxlib 0.9.2 writes them: more than a pipe's
# 64 KiB together, so the filter must keep reading while the writer writes), then lines
# that must survive: another of the loader's complaints (a real instruction-set
# mismatch), an ordinary native line, one without a newline at the end.
_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from ntk_bayes._native_log import drop_native_lines

    alarm = (b"E1205 04:49:54.932803 27713 cpu_aot_loader.cc:220] Loading XLA:CPU AOT "
             b"result. Target machine feature +prefer-no-%s is not  supported on the "
             b"host machine. Compile machine features: [" + b"+avx2," * 500 + b"]\\n")
    with drop_native_lines():
        for k in range(40):
            os.write(2, alarm % (b"gather" if k % 2 else b"scatter"))
        os.write(2, b"E1205 cpu_aot_loader.cc:220] Target machine feature +avx512f is not "
                    b"supported on the host machine\\n")
        os.write(2, b"native line kept\\n")
        print("python line kept", file=sys.stderr)
        os.write(2, b"no newline at the end")
    print("", file=sys.stderr)
    os.write(2, b"native after the block\\n")
    """
)


def _run(env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, env=env, timeout=60, check=True
    )


def test_false_alarm_dropped_everything_else_kept():
    err = _run({}).stderr
    assert b"prefer-no-" not in err
    for kept in (
        b"Target machine feature +avx512f is not supported",
        b"native line kept\n",
        b"python line kept\n",
        b"no newline at the end\n",
        b"native after the block\n",
    ):
        assert err.count(kept) == 1, (kept, err[-500:])
    # what the block's native writes said comes out before the block ends
    assert err.index(b"no newline at the end") < err.index(b"native after the block")


@pytest.mark.parametrize("setting", ["all", "ALL"])
def test_native_log_all_keeps_every_line(setting):
    err = _run({"NTK_BAYES_NATIVE_LOG": setting}).stderr
    assert err.count(b"prefer-no-gather is not") == 20
    assert err.count(b"prefer-no-scatter is not") == 20
