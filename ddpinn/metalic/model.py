"""Gaussian-process reward model over (context, arm) with scikit-learn.

The input of the model is the concatenation ``[context (d_c) | arm features (d_a) | ...]``;
the kernel is a product of kernels that each act on one block of columns::

    k = amplitude * k_ctx(context) * k_arm(arm) [* k_arm(previous arm)] + noise

``k_ctx`` is a Matern-5/2 kernel with one length scale per context parameter (contexts are
standardised to [0, 1]); ``k_arm`` is an RBF kernel over the arm's mask bits, with one length
scale per bit (``ard``) or one for all (``hamming``: a function of the Hamming distance). The
column selection is :class:`OnDims`, a small wrapper that forwards hyperparameters to the
wrapped scikit-learn kernel (like scikit-learn's own ``Exponentiation``); all GP algebra
(hyperparameter fitting, posterior, samples) is scikit-learn's ``GaussianProcessRegressor``.
"""
from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np

try:  # scikit-learn is needed by METALIC only: the rest of ddpinn runs without it
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import (RBF, ConstantKernel, Hyperparameter, Kernel,
                                                  Matern, WhiteKernel)
except ImportError as _exc:  # pragma: no cover - exercised only without scikit-learn
    _IMPORT_ERROR = _exc
    Kernel = object
else:
    _IMPORT_ERROR = None

try:  # a dependency of scikit-learn
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

ARM_KERNELS = ("ard", "hamming")


def single_threaded(fn):
    """Run ``fn`` with one BLAS thread: the matrices here are tiny, and on a node busy with
    training ranks a threaded BLAS spins and makes a GP fit ten times slower."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
        with ctx:
            return fn(*args, **kwargs)
    return wrapper


def require_sklearn() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError("METALIC needs scikit-learn for its Gaussian-process reward model: "
                          "pip install scikit-learn") from _IMPORT_ERROR


class OnDims(Kernel):
    """Apply ``kernel`` to the columns ``dims`` of the inputs.

    Parameters
    ----------
    kernel : sklearn Kernel
    dims : tuple of int, column indices of X (pass a tuple)
    """

    def __init__(self, kernel, dims):
        self.kernel = kernel
        self.dims = dims  # stored as given: scikit-learn's clone() checks identity

    def get_params(self, deep=True):
        params = dict(kernel=self.kernel, dims=self.dims)
        if deep:
            params.update(("kernel__" + k, v) for k, v in self.kernel.get_params().items())
        return params

    @property
    def hyperparameters(self):
        return [Hyperparameter("kernel__" + h.name, h.value_type, h.bounds, h.n_elements,
                               h.fixed) for h in self.kernel.hyperparameters]

    @property
    def theta(self):
        return self.kernel.theta

    @theta.setter
    def theta(self, theta):
        self.kernel.theta = theta

    @property
    def bounds(self):
        return self.kernel.bounds

    def _cols(self, X):
        return None if X is None else np.asarray(X, dtype=float)[:, list(self.dims)]

    def __call__(self, X, Y=None, eval_gradient=False):
        return self.kernel(self._cols(X), self._cols(Y), eval_gradient=eval_gradient)

    def diag(self, X):
        return self.kernel.diag(self._cols(X))

    def is_stationary(self):
        return self.kernel.is_stationary()

    @property
    def requires_vector_input(self):
        return True

    def __eq__(self, other):
        return type(self) is type(other) and tuple(self.dims) == tuple(other.dims) and \
            self.kernel == other.kernel

    def __repr__(self):
        return f"{self.kernel!r}[cols {list(self.dims)}]"


def make_kernel(n_context: int, arm_blocks, arm_kernel: str = "hamming"):
    """Product kernel over ``[context | arm block 1 | arm block 2 | ...]``.

    Parameters
    ----------
    n_context : int, context columns (first)
    arm_blocks : list of int, widths of the following arm-feature blocks (0: arm space with a
        single arm, no kernel factor)
    arm_kernel : "ard" | "hamming"
    """
    require_sklearn()
    if arm_kernel not in ARM_KERNELS:
        raise ValueError(f"arm kernel {arm_kernel!r}; choose one of: {', '.join(ARM_KERNELS)}")
    k = ConstantKernel(1.0, (1e-2, 1e2))
    if n_context:
        k = k * OnDims(Matern(length_scale=np.full(n_context, 0.3), length_scale_bounds=(0.03, 30.0),
                              nu=2.5), tuple(range(n_context)))
    start = n_context
    for width in arm_blocks:
        if width:
            ls = np.full(width, 1.0) if arm_kernel == "ard" else 1.0
            k = k * OnDims(RBF(length_scale=ls, length_scale_bounds=(0.1, 100.0)),
                           tuple(range(start, start + width)))
        start += width
    return k + WhiteKernel(0.05, (1e-6, 1.0))


class RewardModel:
    """A GP over inputs ``X`` (n, d) -> reward (n,), refitted from scratch on demand.

    Parameters
    ----------
    kernel : a kernel from :func:`make_kernel`
    seed : int, random state of the hyperparameter restarts
    restarts : int, extra optimizer restarts from random hyperparameters
    """

    def __init__(self, kernel, seed: int = 0, restarts: int = 2):
        require_sklearn()
        self.kernel = kernel
        self.seed = int(seed)
        self.restarts = int(restarts)
        self.gp = None
        self.X = None
        self.y = None

    @single_threaded
    def fit(self, X, y, theta=None) -> "RewardModel":
        """Fit hyperparameters by maximum marginal likelihood, or, with ``theta`` (log
        hyperparameters from an earlier fit), only condition on the data."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        kernel = self.kernel
        optimizer = "fmin_l_bfgs_b"
        if theta is not None and len(theta) == len(self.kernel.theta):
            kernel = self.kernel.clone_with_theta(np.asarray(theta, dtype=float))
            optimizer = None
        self.gp = GaussianProcessRegressor(
            kernel=kernel, normalize_y=True, optimizer=optimizer,
            n_restarts_optimizer=self.restarts if optimizer else 0,
            random_state=self.seed, alpha=1e-8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp.fit(X, y)
        self.X, self.y = X, y
        return self

    @property
    def theta(self) -> list:
        """Fitted log hyperparameters (store them to condition later without refitting)."""
        return [float(t) for t in self.gp.kernel_.theta]

    @single_threaded
    def predict(self, X):
        """Posterior mean and standard deviation of the latent reward (noise removed)."""
        X = np.asarray(X, dtype=float)
        mu, sd = self.gp.predict(X, return_std=True)
        noise = self._noise_var()
        var = np.maximum(sd ** 2 - noise, 1e-12)
        return mu, np.sqrt(var)

    def _noise_var(self) -> float:
        """Variance of the white-noise term, in the units of y."""
        k = self.gp.kernel_
        white = getattr(k, "k2", None)
        if isinstance(white, WhiteKernel):
            scale = float(np.ravel(getattr(self.gp, "_y_train_std", 1.0))[0])
            return float(white.noise_level) * scale ** 2
        return 0.0

    @single_threaded
    def sample(self, X, rng: np.random.Generator) -> np.ndarray:
        """One joint posterior sample of the reward at the rows of X: (n,)."""
        X = np.asarray(X, dtype=float)
        seed = int(rng.integers(2 ** 31 - 1))
        return np.ravel(self.gp.sample_y(X, n_samples=1, random_state=seed))

    def with_fantasies(self, Xp) -> "RewardModel":
        """The model conditioned also on pending inputs ``Xp`` observed at their posterior
        mean, hyperparameters kept (kriging believer: the mean is unchanged there and the
        uncertainty shrinks, so concurrent rounds spread out)."""
        Xp = np.asarray(Xp, dtype=float)
        if not len(Xp):
            return self
        mu, _ = self.predict(Xp)
        other = RewardModel(self.kernel, self.seed, self.restarts)
        return other.fit(np.vstack([self.X, Xp]), np.concatenate([self.y, mu]), self.theta)
