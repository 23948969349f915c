"""The NumPyro-facing examples run at their ``--quick`` size as a user starts them.

numpyro_gp.py (NumPyro's examples/gp.py with an NNGP prior, parallel chains on forced
CPU devices), latent_gp_classification.py (Bernoulli and Poisson latent GPs) and
radon.py (85-county hierarchy as one batched GP; --quick keeps 12 counties).
"""

import os
import re

import pytest
from _examples import EXAMPLES, run_python

NUMBER = r"[-+]?\d+\.?\d*"


def _run(name, *args):
    env = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
    # Each runs in 10-100 s on an idle 2-core VM; 300 s is a hang (stacks are printed).
    proc = run_python([EXAMPLES / f"{name}.py", "--quick", *args], env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_numpyro_gp_port_with_parallel_chains():
    # a chain per device through nb.priors.sharded_chains (NumPyro's "parallel" with GP
    # sites runs in e2e/test_chain_methods.py)
    out = _run("numpyro_gp", "--num-chains", "2", "--chain-method", "sharded")
    assert "2 chains, sharded" in out
    elpd = float(re.search(rf"PSIS-LOO over 25 points: elpd ({NUMBER})", out).group(1))
    assert -60 < elpd < 20  # 25 standardised points: a finite, sane total


@pytest.mark.parametrize("likelihood", ["bernoulli", "poisson"])
def test_latent_gp_examples(likelihood):
    out = _run("latent_gp_classification", "--likelihood", likelihood)
    if likelihood == "bernoulli":
        acc = float(re.search(rf"accuracy ({NUMBER})", out).group(1))
        assert acc >= 0.6  # 20 points of a 2 sin(2x) logit: chance is 0.5
    else:
        err = float(re.search(rf"true rate\| ({NUMBER})", out).group(1))
        assert err < 3.0  # rates between e^0 and e^2


def test_radon_quick():
    out = _run("radon", "--chains", "2")
    m = re.search(r"NUTS: 2 chains \(vectorized\), (\d+) homes on (\d+) distinct inputs", out)
    assert m and int(m.group(1)) > 50 and int(m.group(2)) < int(m.group(1))
    assert re.search(rf"PSIS-LOO over {m.group(1)} homes", out)  # every home, not every input
