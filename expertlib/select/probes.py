"""Linear probes on frozen features, many at once, in torch: scikit-learn's logistic regression, batched on a GPU.

A probe is :func:`expertlib.select.proxies.linear_probe_accuracy`'s model: features standardised on the
training split (scikit-learn's ``StandardScaler``), then an L2-regularised logistic regression
(``LogisticRegression(C=1)``: softmax over the classes seen in training, one sigmoid for two), fitted to its
optimum, and its test accuracy. The ``gpu`` scale runs about a thousand of them (a linear proxy per candidate
and task in selection, a frozen classifier per candidate and task in transfer); one by one in scikit-learn
they take about 0.13 s of CPU each. Here the probes of one task (every candidate's features) are fitted
together: L-BFGS with the step chosen per probe among a fixed ladder, evaluated at once, so that nothing waits
for the host but a convergence read every few iterations.

The CPU pipeline keeps scikit-learn (its committed numbers are scikit-learn's); on a CPU in float64 this function
reaches the same optimum (tests/test_probes.py: weights within 1e-4 relative of scikit-learn at a tight
tolerance, and accuracies within one test example in a hundred of the pipeline's scikit-learn settings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

STEPS = torch.tensor([1.0, 0.5, 0.25, 0.1, 0.03, 0.01, 1e-3, 1e-4], dtype=torch.float64)
"""The step sizes tried at once along each probe's L-BFGS direction (the largest that decreases the loss enough,
Armijo's rule, is taken; none: the probe stays where it is)."""


def linear_probe_accuracies(train_x: Sequence[np.ndarray] | np.ndarray, train_y: np.ndarray,
                            test_x: Sequence[np.ndarray] | np.ndarray, test_y: np.ndarray, c: float = 1.0,
                            device: str = "cpu", max_iter: int = 1000, tol: float = 1e-8) -> list[float]:  # fmt: skip
    """Test accuracy of one probe per feature set (``train_x[p]``, ``test_x[p]``: one candidate's features of the
    same examples), fitted together on ``device``. Feature sets of different widths are fitted in groups."""
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(
            f"a linear probe needs at least two classes in its training labels, got {classes.tolist()}"
        )
    widths = [np.shape(x)[1] for x in train_x]
    out = [0.0] * len(widths)
    for width in dict.fromkeys(widths):
        members = [i for i, w in enumerate(widths) if w == width]
        accs = _fit_group([train_x[i] for i in members], train_y, [test_x[i] for i in members], test_y, classes, c,
                          device, max_iter, tol)  # fmt: skip
        for i, a in zip(members, accs, strict=True):
            out[i] = a
    return out


def _fit_group(train_x, train_y, test_x, test_y, classes, c, device, max_iter, tol) -> list[float]:
    dt = torch.float64
    xs = torch.as_tensor(np.stack(train_x), dtype=dt).to(device)  # (P, n, d)
    xt = torch.as_tensor(np.stack(test_x), dtype=dt).to(device)
    mean, std = xs.mean(1, keepdim=True), xs.std(1, unbiased=False, keepdim=True)
    std = torch.where(std == 0, torch.ones_like(std), std)  # StandardScaler leaves constant features unscaled
    ones = lambda x: torch.ones((*x.shape[:2], 1), dtype=dt, device=device)  # noqa: E731 - the intercept's column
    xs, xt = torch.cat([(xs - mean) / std, ones(xs)], -1), torch.cat([(xt - mean) / std, ones(xt)], -1)
    target = torch.as_tensor(np.searchsorted(classes, train_y), device=device)
    w = _lbfgs(xs, target, len(classes), c, max_iter, tol)
    pred = _logits(xt, w, len(classes)).argmax(-1).cpu().numpy()  # (P, m): one read for the group
    return [float((classes[p] == test_y).mean()) for p in pred]


def _logits(x: Tensor, w: Tensor, k: int) -> Tensor:
    """``(P, n, k)`` class scores; two classes share one column (scikit-learn's binary model), the other at 0."""
    z = x @ w
    return torch.cat([torch.zeros_like(z), z], -1) if k == 2 else z


def _losses(x: Tensor, y: Tensor, w: Tensor, k: int, c: float) -> tuple[Tensor, Tensor]:
    """scikit-learn's objective per probe, ``C * sum of cross-entropies + |W|^2 / 2`` (the intercept row
    unpenalised), for weights ``w`` of shape ``(..., P, d, k')`` (leading dims: several trial points at once), and
    the log-probabilities it came from."""
    logp = torch.log_softmax(_logits(x, w, k), -1)
    picked = logp.gather(-1, y.expand(logp.shape[:-1])[..., None])
    return -c * picked.sum((-2, -1)) + 0.5 * w[..., :-1, :].pow(2).sum((-2, -1)), logp


def _loss_and_grad(x: Tensor, y: Tensor, w: Tensor, k: int, c: float) -> tuple[Tensor, Tensor]:
    """:func:`_losses` of ``(P, d, k')`` weights and its gradient."""
    loss, logp = _losses(x, y, w, k, c)
    dz = logp.exp()
    dz.scatter_add_(-1, y.expand(dz.shape[:-1])[..., None], -torch.ones_like(dz[..., :1]))
    if k == 2:
        dz = dz[..., 1:]
    grad = c * x.transpose(1, 2) @ dz
    grad[:, :-1] += w[:, :-1]
    return loss, grad


def _lbfgs(x: Tensor, y: Tensor, k: int, c: float, max_iter: int, tol: float, memory: int = 10) -> Tensor:
    """Minimise :func:`_loss_and_grad` for every probe at once from zero weights: L-BFGS directions (two-loop
    recursion over the last ``memory`` steps, batched) and, per probe, the largest step of :data:`STEPS` that
    satisfies Armijo's condition. Stops when every probe's largest gradient entry, per example (scikit-learn's
    scale, whose default stops at 1e-4), is below ``tol`` (read every 10 iterations), or after ``max_iter``."""
    p, d = x.shape[0], x.shape[2]
    w = torch.zeros((p, d, 1 if k == 2 else k), dtype=x.dtype, device=x.device)
    loss, grad = _loss_and_grad(x, y, w, k, c)
    s_hist, y_hist = [], []
    steps = STEPS.to(x.device)
    for it in range(max_iter):
        q = grad.clone()
        alphas = []
        for s_, y_ in reversed(list(zip(s_hist, y_hist, strict=True))):
            rho = 1.0 / (y_ * s_).sum((1, 2)).clamp_min(1e-300)
            a = rho * (s_ * q).sum((1, 2))
            q -= a[:, None, None] * y_
            alphas.append((rho, a))
        if s_hist:
            s_, y_ = s_hist[-1], y_hist[-1]
            q *= ((s_ * y_).sum((1, 2)) / (y_ * y_).sum((1, 2)).clamp_min(1e-300))[:, None, None]
        for (s_, y_), (rho, a) in zip(zip(s_hist, y_hist, strict=True), reversed(alphas), strict=True):
            b = rho * (y_ * q).sum((1, 2))
            q += (a - b)[:, None, None] * s_
        direction = -q
        slope = (grad * direction).sum((1, 2))
        bad = slope >= 0  # not a descent direction (rounding): fall back to the gradient
        direction = torch.where(bad[:, None, None], -grad, direction)
        slope = torch.where(bad, -(grad * grad).sum((1, 2)), slope)
        trial = w[None] + steps[:, None, None, None] * direction[None]  # (steps, P, d, k')
        losses = _losses(x, y, trial, k, c)[0]  # (steps, P): every trial step in one pass
        ok = losses <= loss[None] + 1e-4 * steps[:, None] * slope[None]
        first = torch.where(
            ok.any(0), ok.float().argmax(0), torch.full_like(loss, len(steps), dtype=torch.long)
        )
        moved = first < len(steps)
        step = torch.where(moved, steps[first.clamp(max=len(steps) - 1)], torch.zeros_like(loss))
        w_new = w + step[:, None, None] * direction
        loss_new, grad_new = _loss_and_grad(x, y, w_new, k, c)
        s_hist.append(w_new - w)
        y_hist.append(grad_new - grad)
        if len(s_hist) > memory:
            s_hist.pop(0)
            y_hist.pop(0)
        w, loss, grad = w_new, loss_new, grad_new
        if it % 10 == 9 and float(grad.abs().amax()) < tol * x.shape[1]:
            break
    return w
