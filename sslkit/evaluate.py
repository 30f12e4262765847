"""Evaluation of a frozen encoder: kNN, linear probe, few-shot, always beside random init.

Features are extracted once, in eval mode and without gradients, from the un-augmented
images; every protocol then works on those features:

- kNN: cosine similarity, the k nearest train features vote with weight exp(sim / T): the
  weighted kNN of InstDisc (Wu et al., CVPR 2018, section 3.4: weight exp(s_i / tau), k = 200,
  tau = 0.07 "as in training" on ImageNet). The kit's T = 0.1 is the CIFAR-10 setting of code that
  uses this kNN: the authors' cifar.py (zhirongw/lemniscate.pytorch: --nce-t 0.1, and
  kNN(..., 200, args.nce_t)), MoCo's CIFAR-10 demo (facebookresearch/moco, colab-notebook branch,
  colab/moco_cifar10_demo.ipynb: --knn-k 200, --knn-t 0.1) and lightly's KNNClassifier defaults
  (knn_k=200, knn_t=0.1).
- linear probe: multinomial logistic regression on standardised features, L2 penalty C = 1,
  scikit-learn's lbfgs on one BLAS thread (``solver="torch"`` solves the same objective by
  full-batch L-BFGS in torch: within 0.1 point of it on every shipped reference, and 3-5x slower
  on two CPU cores; benchmarks/RESULTS.md, "Evaluation in seconds").
- few-shot: the same probe on k labelled images per class, over several seeds: mean and std.

Features are cached on disk (:mod:`sslkit.cache`), keyed by the sha256 of the encoder's weights
and of the images, so a second evaluation of the same encoder (a reference, a cached run, a second
"Run All") extracts nothing.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from sslkit.backbones import eval_batch_size
from sslkit.cache import features_key, load_cached, result_key, store_cached, tensor_digest
from sslkit.data import ImageData
from sslkit.loop import TrainConfig, lr_at

PROTOCOLS = ("knn", "linear", "fewshot10")


def extract_features(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int | None = None,
                     device: str | torch.device | None = None, autocast: bool | None = None,
                     cache: bool = True) -> torch.Tensor:
    """Features of uint8 ``images (N, C, H, W)`` as float32 ``(N, D)`` on the CPU.

    The encoder is put in eval mode (BatchNorm uses its running statistics) for the duration
    and restored to its previous mode afterwards. ``autocast``: bf16 autocast, by default on a
    GPU only; False gives fp32 features everywhere (reference cards, so a CPU re-measures them).
    ``cache``: look the features up in (and add them to) the feature cache, keyed by the sha256 of
    the encoder's state and of ``images``, the autocast setting and the device type; features are
    deterministic for fixed weights, so a hit returns what the forward pass would.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    autocast = device.type == "cuda" if autocast is None else autocast
    key = features_key(encoder, images, autocast=autocast, device=device.type) if cache else None
    if key is not None:
        hit = load_cached(key)
        if isinstance(hit, torch.Tensor) and len(hit) == len(images):
            return hit
    feats = _forward_features(encoder, images, batch_size or eval_batch_size(device), device, autocast)
    if key is not None:
        store_cached(key, feats)
    return feats


@torch.no_grad()
def _forward_features(encoder, images, batch_size, device, autocast) -> torch.Tensor:
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            x = images[i: i + batch_size].to(device).float().div_(255).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out.append(encoder(x).float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


@torch.no_grad()
def knn_predict(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, k: int = 200,
                temperature: float = 0.1, num_classes: int | None = None, chunk: int = 1024) -> torch.Tensor:
    """Temperature-weighted cosine kNN; returns the predicted label of each test feature.

    Written by hand because scikit-learn's KNeighborsClassifier has no exp(sim / T) weighting.
    """
    num_classes = num_classes or int(train_y.max()) + 1
    k = min(k, len(train_f))
    train_n = F.normalize(train_f, dim=1)
    preds = []
    for i in range(0, len(test_f), chunk):
        sim = F.normalize(test_f[i: i + chunk], dim=1) @ train_n.T          # (b, N)
        top_sim, top_idx = sim.topk(k, dim=1)                                # (b, k)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(sim), num_classes).scatter_add_(1, train_y[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_f, train_y, test_f, test_y, k: int = 200, temperature: float = 0.1) -> float:
    """Accuracy in [0, 1] of :func:`knn_predict`."""
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    return float((knn_predict(train_f, train_y, test_f, k, temperature, num_classes) == test_y).float().mean())

# lbfgs iterations for a probe: 1,000 (scikit-learn's default) left the random-init ViT's full-split
# probe unconverged (1,128 needed); every other encoder stops well before (RESULTS.md, evaluation)
MAX_ITER = 3000


class TorchProbe:
    """A fitted multinomial logistic regression on standardised features (what :func:`fit_torch_probe`
    returns): ``predict`` and ``score`` take float features like scikit-learn's pipeline does."""

    def __init__(self, classes, mean, scale, weight, bias, n_iter: int):
        self.classes, self.mean, self.scale, self.weight, self.bias = classes, mean, scale, weight, bias
        self.n_iter = n_iter

    def decision_function(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64)
        return ((x - self.mean) / self.scale) @ self.weight + self.bias

    def predict(self, x) -> np.ndarray:
        return self.classes[self.decision_function(x).argmax(1)].numpy()

    def score(self, x, y) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())


def fit_torch_probe(train_f, train_y, C: float = 1.0, max_iter: int = MAX_ITER, tol: float = 1e-4) -> TorchProbe:
    """scikit-learn's LogisticRegression(C) on StandardScaler features, solved in torch: the mean
    cross-entropy plus ||W||^2 / (2 C n) (scikit-learn's objective divided by n; the bias is not
    penalised), by full-batch L-BFGS in float64 until the largest gradient entry is below ``tol``
    (scikit-learn's lbfgs stops on the same test). Warns, as scikit-learn does, if ``max_iter``
    iterations did not get there."""
    x = torch.as_tensor(train_f, dtype=torch.float64)
    y = torch.as_tensor(train_y, dtype=torch.long)
    classes = torch.unique(y)
    if len(classes) < 2:
        raise ValueError(f"a linear probe needs labels of at least two classes, got only class {int(classes[0])}.")
    mean, scale = x.mean(0), x.std(0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))     # StandardScaler leaves constant columns at 0
    x = (x - mean) / scale
    n, d = x.shape
    k = len(classes)
    y = torch.searchsorted(classes, y)        # the labels as 0..k-1, as scikit-learn encodes them
    w = torch.zeros(d, k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    lam = 1.0 / (C * n)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=tol,
                            tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * lam * (w * w).sum()
        loss.backward()
        return loss

    # One thread: the problem is small (N x D by D x K), and torch's threads meeting at every op's
    # barrier made each L-BFGS iteration 7x slower on two busy cores (benchmarks/RESULTS.md, evaluation).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            opt.step(closure)
            closure()
    finally:
        torch.set_num_threads(threads)
    n_iter = opt.state[w]["n_iter"]
    if float(torch.cat([w.grad.flatten(), b.grad]).abs().max()) > tol:
        from sklearn.exceptions import ConvergenceWarning
        warnings.warn(f"the linear probe did not converge in {max_iter} L-BFGS iterations.", ConvergenceWarning)
    return TorchProbe(classes, mean, scale, w.detach(), b.detach(), n_iter)


def fit_sklearn_probe(train_f, train_y, C: float = 1.0, max_iter: int = MAX_ITER):
    """A logistic-regression probe (scikit-learn pipeline) fitted on standardised frozen features:
    the kit's probe (the default solver of :func:`fit_linear_probe`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from threadpoolctl import threadpool_limits

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    # one BLAS thread: with torch's threads alive in the same process, multi-threaded BLAS made
    # this fit 20x slower on the 2-core CPU (measured: 2.8 s against 0.12 s for 10k x 256)
    with threadpool_limits(limits=1, user_api="blas"):
        probe.fit(np.asarray(train_f), np.asarray(train_y))
    return probe


def fit_linear_probe(train_f, train_y, C: float = 1.0, max_iter: int = MAX_ITER, solver: str = "sklearn"):
    """A fitted linear probe with ``predict`` and ``score`` on float features: ``solver`` "torch"
    (:func:`fit_torch_probe`) or "sklearn" (:func:`fit_sklearn_probe`), the same objective."""
    if solver not in ("sklearn", "torch"):
        raise ValueError(f"unknown probe solver '{solver}': use 'sklearn' or 'torch'.")
    classes = np.unique(np.asarray(train_y))
    if len(classes) < 2:
        raise ValueError(f"a linear probe needs labels of at least two classes, got only class {int(classes[0])}.")
    if solver == "sklearn":
        return fit_sklearn_probe(train_f, train_y, C, max_iter)
    return fit_torch_probe(train_f, train_y, C, max_iter)


def linear_probe(train_f, train_y, test_f, test_y, C: float = 1.0, max_iter: int = MAX_ITER, solver: str = "sklearn",
                 cache: bool = True) -> float:
    """Accuracy in [0, 1] of a logistic-regression probe on standardised frozen features.

    ``cache``: the accuracy is kept in the feature cache under the sha256 of the four tensors and the
    settings (the fit is deterministic), so a notebook run again, or the comparison, fits each probe once.
    """
    from threadpoolctl import threadpool_limits

    key = None
    if cache:
        import sklearn

        key = result_key("linear_probe", train_f, train_y, test_f, test_y,      # tensors hash once (cache.tensor_digest)
                         C=C, max_iter=max_iter, solver=solver, sklearn=sklearn.__version__)
        hit = load_cached(key)
        if isinstance(hit, dict) and "accuracy" in hit:
            return float(hit["accuracy"])
    probe = fit_linear_probe(train_f, train_y, C, max_iter, solver)
    with threadpool_limits(limits=1, user_api="blas"):
        accuracy = float(probe.score(np.asarray(test_f), np.asarray(test_y)))
    if key:
        store_cached(key, {"accuracy": accuracy})
    return accuracy


def few_shot(train_f, train_y, test_f, test_y, shots: int = 10, seeds: int = 5,
             solver: str = "sklearn", cache: bool = True) -> tuple[float, float]:
    """Linear probe on ``shots`` labelled images per class; mean and std over ``seeds`` draws
    (each draw's probe cached as :func:`linear_probe` does)."""
    accs = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat([c_idx[torch.randperm(len(c_idx), generator=g)[:shots]]
                         for c_idx in (torch.nonzero(train_y == c).flatten() for c in train_y.unique())])
        accs.append(linear_probe(train_f[idx], train_y[idx], test_f, test_y, solver=solver, cache=cache))
    return float(np.mean(accs)), float(np.std(accs))


def evaluate_features(train_f, train_y, test_f, test_y, shots: int = 10, seeds: int = 5) -> dict:
    """Every protocol on precomputed features: accuracies in [0, 1]."""
    fs_mean, fs_std = few_shot(train_f, train_y, test_f, test_y, shots, seeds)
    return {"knn": knn_accuracy(train_f, train_y, test_f, test_y),
            "linear": linear_probe(train_f, train_y, test_f, test_y),
            f"fewshot{shots}": fs_mean, f"fewshot{shots}_std": fs_std}


def evaluate_encoder(encoder: torch.nn.Module, data: ImageData, shots: int = 10, seeds: int = 5,
                     device: str | torch.device | None = None, autocast: bool | None = None) -> dict:
    """Extract features of ``data``'s train and test splits and run every protocol."""
    train_f = extract_features(encoder, data.train_x, device=device, autocast=autocast)
    test_f = extract_features(encoder, data.test_x, device=device, autocast=autocast)
    return evaluate_features(train_f, data.train_y, test_f, data.test_y, shots, seeds)


def compare_with_random_init(trained: torch.nn.Module, random_init: torch.nn.Module, data: ImageData,
                             **kw) -> dict:
    """``{"trained": {...}, "random_init": {...}}``: the same protocols on both encoders."""
    return {"trained": evaluate_encoder(trained, data, **kw), "random_init": evaluate_encoder(random_init, data, **kw)}


def format_table(results: dict[str, dict], shots: int = 10) -> str:
    """A plain-text table: one row per encoder, accuracies in percent."""
    cols = [("kNN", "knn"), ("linear", "linear"), (f"{shots}-shot", f"fewshot{shots}")]
    width = max(len(name) for name in results) + 2
    lines = ["encoder".ljust(width) + "".join(c.rjust(14) for c, _ in cols)]
    for name, r in results.items():
        cells = []
        for _, key in cols:
            v = r.get(key)
            std = r.get(f"{key}_std")
            txt = "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"
            if std is not None and v is not None:
                txt += f" ± {100 * std:.1f}"
            cells.append(txt.rjust(14))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


# ------------------------------------------------------------------------ layer-wise probe

def encoder_stages(encoder: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The encoder's backbone as named stages to run in order: ``SmallCNN.stages`` (stage1..4),
    or a ResNet's stem then ``layer1..layer4`` (the stem is folded into layer1)."""
    backbone = encoder.backbone
    if hasattr(backbone, "stages"):
        return {f"stage{i + 1}": s for i, s in enumerate(backbone.stages)}
    if all(hasattr(backbone, f"layer{i}") for i in range(1, 5)):
        stem = torch.nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        return {"layer1": torch.nn.Sequential(stem, backbone.layer1),
                **{f"layer{i}": getattr(backbone, f"layer{i}") for i in range(2, 5)}}
    raise ValueError(f"no stages known for a {type(backbone).__name__} backbone: the layer-wise probe "
                     "reads SmallCNN.stages or a ResNet's layer1..layer4.")


@torch.no_grad()
def extract_stage_features(encoder: torch.nn.Module, images: torch.Tensor, pool: int = 2,
                           batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """Features after each stage: uint8 ``images (N, C, H, W)`` -> ``{stage: (N, C_s * pool**2)}``.

    Each stage's feature map is average-pooled to ``pool x pool`` (rotation's authors train
    non-linear classifiers on whole feature maps: gidariss/FeatureLearningRotNet,
    architectures/NonLinearClassifier.py, flattened for 'MultLayer', convolved for
    'NIN_ConvBlock3'; pooling keeps a little of the layout while making the probes affordable).
    Runs the stages one after the other, in eval mode, no hooks.
    """
    stages = encoder_stages(encoder)
    device = next(encoder.parameters()).device
    batch_size = batch_size or eval_batch_size(device)
    was_training = encoder.training
    encoder.eval()
    out: dict[str, list] = {name: [] for name in stages}
    try:
        for i in range(0, len(images), batch_size):
            x = images[i: i + batch_size].to(device).float().div_(255)
            x = (x - encoder.mean) / encoder.std                   # the Encoder's own input normalisation
            for name, stage in stages.items():
                x = stage(x)                                       # (b, C_s, H_s, W_s)
                out[name].append(F.adaptive_avg_pool2d(x, pool).flatten(1).float().cpu())
    finally:
        encoder.train(was_training)
    return {name: torch.cat(f) for name, f in out.items()}


def layerwise_probe(encoder: torch.nn.Module, data: ImageData, pool: int = 2, max_iter: int = 300) -> dict[str, float]:
    """Linear-probe accuracy in [0, 1] on the features after each stage of the encoder.

    Rotation's authors evaluate an early-middle block, not the last: their CIFAR-10 script trains
    object classifiers "on the feature maps of the 2nd conv. block" of a four-block RotNet
    (gidariss/FeatureLearningRotNet, run_cifar10_based_unsupervised_experiments.sh; notebook 01,
    section 9). ``{stage: accuracy}`` in network order.
    """
    train_f = extract_stage_features(encoder, data.train_x, pool)
    test_f = extract_stage_features(encoder, data.test_x, pool)
    return {name: linear_probe(train_f[name], data.train_y, test_f[name], data.test_y, max_iter=max_iter)
            for name in train_f}


def depth_groups(encoder: torch.nn.Module) -> list[list[torch.nn.Parameter]]:
    """The encoder's parameters grouped by depth, input side first: one group per child module of
    the backbone that holds parameters, a ViT's list of blocks counted block by block (ViT: patch
    embedding, block 1..n, final norm; small CNN: its four stages)."""
    backbone = getattr(encoder, "backbone", encoder)
    groups = []
    for child in backbone.children():
        for part in (child if isinstance(child, torch.nn.ModuleList) else [child]):
            params = [p for p in part.parameters() if p.requires_grad]
            if params:
                groups.append(params)
    return groups


def fine_tune(encoder: torch.nn.Module, data: ImageData, steps: int = 200, batch_size: int = 128,
              lr: float = 1e-3, weight_decay: float = 0.05, layer_decay: float | None = 0.75, seed: int = 0,
              device: str | torch.device | None = None, train_groups: int | None = None,
              cache: bool = True) -> float:
    """Fine-tuning: a copy of the whole encoder plus a linear head, trained with the labels for a
    fixed number of steps; returns the test accuracy in [0, 1].

    A fixed step budget (not a time budget) so that two encoders get exactly the same training.
    AdamW, linear warm-up over the first 10% then a half cosine, random crops (scale 0.5-1) and
    flips of the train images, and layer-wise learning-rate decay: a short version of MAE's
    end-to-end fine-tuning recipe (He et al., CVPR 2022, appendix A.1, Table 9: AdamW, base lr
    1e-3, weight decay 0.05, layer-wise lr decay 0.75, cosine schedule after 5 warm-up epochs),
    without its RandAug, mixup, cutmix, label smoothing and drop path. With
    ``layer_decay`` d, the head and the deepest group of :func:`depth_groups` train at ``lr`` and
    each group below at d times the one above, so the early layers, whose pre-trained features
    are the most general, move least (``None``: one lr for everything). The encoder passed in is
    not changed. ``train_groups`` n trains only the n deepest groups (and the head), the rest
    frozen (its BatchNorm statistics too); None trains everything.

    ``cache``: the accuracy is kept in the feature cache under the encoder's and the images' sha256,
    every setting, the device type, torch's version and its thread count (the order of float sums),
    so the same fine-tuning on the same machine is run once.
    """
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    settings = dict(steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay,
                    seed=seed, train_groups=train_groups, device=device.type, threads=torch.get_num_threads(),
                    test=tensor_digest(data.test_x), train_y=tensor_digest(data.train_y),
                    test_y=tensor_digest(data.test_y), protocol="fine_tune")
    key = features_key(encoder, data.train_x, **settings) if cache else None
    hit = load_cached(key) if key else None
    if isinstance(hit, dict) and "accuracy" in hit:
        return float(hit["accuracy"])
    acc = _fine_tune(encoder, data, steps, batch_size, lr, weight_decay, layer_decay, seed, device, train_groups)
    if key:
        store_cached(key, {"accuracy": acc})
    return acc


def _fine_tune(encoder, data, steps, batch_size, lr, weight_decay, layer_decay, seed, device, train_groups) -> float:
    import copy

    from sslkit.augment import random_resized_crop

    torch.manual_seed(seed)
    body = copy.deepcopy(encoder)
    head = torch.nn.Linear(encoder.dim, len(data.classes))
    model = torch.nn.Sequential(body, head).to(device)
    model.train()
    groups = depth_groups(body)
    if train_groups is not None:
        if not 0 <= train_groups <= len(groups):
            raise ValueError(f"train_groups must be between 0 and {len(groups)}, got {train_groups}.")
        frozen, groups = groups[:len(groups) - train_groups], groups[len(groups) - train_groups:]
        for p in (p for g in frozen for p in g):
            p.requires_grad_(False)
        for m in body.modules():          # frozen BatchNorm layers keep their pre-trained statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
    scales = [1.0] * len(groups) if layer_decay is None else \
        [layer_decay ** (len(groups) - 1 - i) for i in range(len(groups))]
    param_groups = [{"params": g, "scale": s} for g, s in zip(groups, scales)]
    grouped = {id(p) for g in groups for p in g}
    rest = [p for p in model.parameters() if id(p) not in grouped and p.requires_grad]   # the head (and anything ungrouped)
    param_groups.append({"params": rest, "scale": 1.0})
    opt = torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    schedule = TrainConfig(epochs=1, lr=lr, warmup=0.1)
    g = torch.Generator().manual_seed(seed)   # the same batches for every encoder
    for step in range(steps):
        idx = torch.randint(len(data.train_x), (batch_size,), generator=g)
        x = data.train_x[idx].to(device).float().div_(255)
        x = random_resized_crop(x, scale=(0.5, 1.0), flip_p=0.5)
        for group in opt.param_groups:
            group["lr"] = lr_at(step / steps, schedule) * group["scale"]
        loss = F.cross_entropy(model(x), data.train_y[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    logits = extract_features(model, data.test_x, device=device, cache=False)   # the same batched eval-mode pass
    return float((logits.argmax(1) == data.test_y).float().mean())


def compare_fine_tune(trained: torch.nn.Module, random_init: torch.nn.Module, data: ImageData, **kw) -> dict:
    """``{"trained": acc, "random_init": acc}``: :func:`fine_tune` with the same budget for both."""
    return {"trained": fine_tune(trained, data, **kw), "random_init": fine_tune(random_init, data, **kw)}
