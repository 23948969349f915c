"""Defaults that the command line states in its help, kept free of JAX imports so that
``ntk-bayes --help`` stays instant (``ntk_bayes.bnn`` and ``ntk_bayes.cli`` both read
them from here)."""

# The default sampler set-up (docs/bnn.md: measured against the alternatives on the
# default calibrate BNN). Depth 8 although every tree saturates: shorter trees cost
# more per effective draw (depth 6: 3x fewer ESS per gradient); split R-hat, not ESS,
# sets the number of draws per chain.
DEFAULT_NUTS = dict(
    num_warmup=400,
    num_samples=500,
    num_chains=16,
    max_tree_depth=8,
    init="prior",
    init_steps=2000,
)
