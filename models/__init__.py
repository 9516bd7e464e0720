"""Training, evaluation, thresholds, registry, rules, lists, policy and the scorer used by the stream.
Which module owns what, lowest first: docs/models.md."""
import os


def passive_openmp() -> None:
    """Let LightGBM's OpenMP threads sleep, not spin, while they wait: call before lightgbm is
    imported. On the shared 2-core machine a busy neighbour makes spinning threads wait out each
    other's time slices: boosting on 1M transfers took 20 s instead of 10 s with one core busy
    (6.5 s vs 7.3 s on an idle machine). Same trees either way. An explicit setting wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
