"""The command line: ``python -m sslkit {datasets,download,pretrain,evaluate,reference,compare,course,demo}``.

Every error a user can cause is one line on stderr and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from sslkit.cache import config_key


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"sslkit: error: {message} (see `python -m sslkit {self.prog.split()[-1]} --help`)\n"
                  if " " in self.prog else f"sslkit: error: {message} (see `python -m sslkit --help`)\n")


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _config_overrides(pairs: list[str]) -> dict:
    """``["temperature=0.2", "augment.jitter_strength=1"]`` -> nested dict."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--config takes KEY=VALUE, got '{pair}'.")
        key, value = pair.split("=", 1)
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _parse_value(value)
    return out


def cmd_datasets(args) -> int:
    from sslkit.data import DATASETS, default_root, is_available

    root = Path(args.data_root) if args.data_root else default_root()
    print(f"data root: {root.resolve()}  (--data-root, else $SSLKIT_DATA, else ./data)")
    for name, info in DATASETS.items():
        ok, where = is_available(name, root)
        status = f"available  {where}" if ok else f"missing    {info.how_to_get}"
        print(f"  {name:<14} {status}\n  {'':<14} {info.description}")
    jpeg = root / "cifar10-jpeg"
    if (jpeg / "train").is_dir():
        print(f"  {'(folder)':<14} available  {jpeg}  (CIFAR-10 as JPEG files; use --dataset {jpeg})")
    return 0


def cmd_download(args) -> int:
    from sslkit.data import DATASETS, load_dataset

    if args.name not in DATASETS:
        raise ValueError(f"unknown dataset '{args.name}': use one of {', '.join(DATASETS)}.")
    data = load_dataset(args.name, args.data_root, download=True)
    print(f"{args.name}: {len(data.train_x)} train and {len(data.test_x)} test images of shape {data.image_shape}")
    return 0


def cmd_pretrain(args) -> int:
    from sslkit import distributed
    from sslkit.profiles import get_profile
    from sslkit.train import RunSpec, TrainConfig, load_data, pretrain, resolve_device

    device = resolve_device(args.device)
    profile = get_profile("full" if device.type == "cuda" else "quick")
    overrides = _config_overrides(args.config or [])
    if args.temperature is not None:
        overrides["temperature"] = args.temperature
    method_config = profile.method_config(args.method, overrides)
    budget = ({"minutes": args.minutes} if args.minutes is not None else
              {"epochs": args.epochs} if args.epochs is not None else
              {"steps": args.steps} if args.steps is not None else {})
    train_kw = {**vars(profile.train_config(args.method)), "seed": args.seed}
    if budget:
        train_kw.update({"epochs": None, "minutes": None, "steps": None, **budget})
    if args.batch_size is not None:
        train_kw["batch_size"] = args.batch_size
    if args.lr is not None:
        train_kw["lr"] = args.lr
    if args.checkpoint_every is not None:
        train_kw["checkpoint_every"] = args.checkpoint_every
    spec = RunSpec(method=args.method, dataset=args.dataset, backbone=args.backbone or profile.backbone_for(args.method),
                   method_config=method_config, train=TrainConfig(**train_kw))
    out = Path(args.out) if args.out else Path("runs") / f"{args.method}-{Path(args.dataset).name}-{config_key(spec.to_dict())}"
    data = load_data(spec, args.data_root)
    ctx = distributed.setup(device)        # under torchrun: join the other processes (DDP)
    try:
        if ctx.is_main:
            print(f"pre-training {args.method} on {data.name} ({len(data.pretrain_x)} images) with {spec.backbone} "
                  f"on {device.type}{f' x {ctx.world} processes' if ctx.world > 1 else ''}; run folder: {out}")
        run = pretrain(spec, out, device=str(device), data=data)
    finally:
        distributed.teardown()
    last = run.history[-1] if run.history else {}
    if ctx.is_main:
        print(f"done: {last.get('step', 0)} steps, final loss {last.get('loss', float('nan')):.3f}, "
              f"{last.get('images_per_s', 0):.0f} images/s. Next: python -m sslkit evaluate {out}")
    return 0


def cmd_evaluate(args) -> int:
    from sslkit.cache import atomic_write_json
    from sslkit.data import load_dataset
    from sslkit.evaluate import compare_with_random_init, format_table
    from sslkit.train import build_method, load_run, resolve_device

    device = resolve_device(args.device)
    if not Path(args.run_dir).is_dir():
        raise FileNotFoundError(f"run folder {args.run_dir} does not exist: give the --out folder of a `pretrain` run.")
    run = load_run(args.run_dir, data_root=args.data_root, device=str(device))
    random_init = build_method(run.spec, run.data).encoder.to(device)
    data = run.data
    if args.dataset:                     # labelled images other than the ones it was pre-trained on
        data = load_dataset(args.dataset, args.data_root)
        if data.image_shape != run.data.image_shape:
            raise ValueError(f"{args.dataset} has images of shape {tuple(data.image_shape)}, but the run was trained "
                             f"on {tuple(run.data.image_shape)}: give labelled images of the run's shape.")
    found = sorted({data.classes[int(c)] for c in data.train_y.unique()})
    if len(found) < 2:                   # pre-training needs no labels; the probes need two classes at least
        raise ValueError(f"evaluation needs labelled images of at least two classes, but {data.name} has "
                         f"{'one class, ' + repr(found[0]) + ',' if found else 'no labelled images,'} in its "
                         f"{len(data.train_x)} train images: give "
                         f"labelled images of the same shape with --dataset, a named dataset or a folder laid out "
                         f"as train/<class>/*.jpg with two or more class folders.")
    if args.max_train or args.max_test:
        data = data.subset(args.max_train, args.max_test)
    print(f"evaluating {args.run_dir} on {len(data.train_x)} train / {len(data.test_x)} test images "
          f"({args.dataset or run.spec.dataset}), frozen features, eval mode ...")
    t0 = time.time()
    results = compare_with_random_init(run.encoder, random_init, data, device=device)
    print(format_table(results))
    print(f"(kNN: k=200 cosine, T=0.1; linear: logistic regression; 10-shot: mean ± std over 5 draws; "
          f"{time.time() - t0:.0f} s)")
    if args.json:
        atomic_write_json({"run": str(args.run_dir), "method": run.spec.method, "dataset": args.dataset or run.spec.dataset,
                           "backbone": run.spec.backbone, "n_train": len(data.train_x), "n_test": len(data.test_x),
                           "results": results}, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_reference(args) -> int:
    from sslkit import reference as ref

    if args.action == "list":
        print(f"references in {ref.REFERENCE_DIR if not args.dir else args.dir} (figures: full CIFAR-10 test split; "
              "in brackets: gain over the random-init encoder of the same seed, in points)")
        for line in ref.list_references(Path(args.dir) if args.dir else None):
            print("  " + line)
        return 0
    if args.action == "build":
        if args.name and len(args.methods) != 1:
            raise ValueError("--name builds one variant: give exactly one method with it.")
        names = args.methods or ref.reference_names()
        for name in names:
            if name not in ref.RECIPES:
                raise ValueError(f"unknown reference '{name}': use one of {', '.join(ref.RECIPES)}.")
        overrides = _config_overrides(args.config or [])
        command = "python -m sslkit reference build " + " ".join(sys.argv[sys.argv.index("build") + 1:]) \
            if "build" in sys.argv else None
        for name in names:
            print(f"building the {args.name or name} reference on {ref.resolve_device(args.device).type} "
                  f"(resumable: run the same command again after an interruption) ...")
            card = ref.build_reference(name, device=args.device, epochs=args.epochs, minutes=args.minutes,
                                       method_config=overrides, out_name=args.name, out_dir=args.dir,
                                       work_dir=args.work_dir, data_root=args.data_root,
                                       command=command if len(names) == 1 else f"python -m sslkit reference build {name}",
                                       eval_subset=tuple(args.eval_subset) if args.eval_subset else None)
            print("  " + ref._summary_line(card["name"], card))
        return 0
    # evaluate
    from sslkit.cache import atomic_write_json
    from sslkit.evaluate import format_table
    from sslkit.train import load_data

    device = ref.resolve_device(args.device)
    loaded = ref.load_reference(args.methods[0] if args.methods else "", device=device,
                                directory=Path(args.dir) if args.dir else None) if len(args.methods) == 1 else None
    if loaded is None:
        raise ValueError("reference evaluate takes exactly one method, e.g. `python -m sslkit reference evaluate simclr`.")
    data = load_data(loaded.spec, args.data_root)
    if args.max_train or args.max_test:
        data = data.subset(args.max_train, args.max_test)
    print(f"evaluating the shipped {loaded.name} reference on {len(data.train_x)} train / {len(data.test_x)} test "
          f"images of {data.name}, beside the random-init encoder of seed {loaded.spec.train.seed} ...")
    t0 = time.time()
    out = ref.evaluate_reference_encoders(loaded.encoder, loaded.random_init_encoder(), data, loaded.spec.method,
                                          device, mae=loaded.method)
    print(format_table(out["results"]))
    if "finetune" in out:
        f = out["finetune"]
        print(f"fine-tuned ({ref.FINETUNE['steps']} steps of {ref.FINETUNE['batch_size']}): "
              f"trained {100 * f['trained']:.1f}%, random init {100 * f['random_init']:.1f}%")
    if "masked_mse" in out:
        m = out["masked_mse"]
        print(f"masked-patch MSE {m['trained']:.3f} (each patch's mean: {m['patch_mean']:.3f})")
    card = loaded.card["evaluation"]["results"]["trained"]
    print(f"the card says kNN {100 * card['knn']:.1f}%, linear {100 * card['linear']:.1f}% "
          f"({loaded.card['evaluation']['split']}); {time.time() - t0:.0f} s")
    if args.json:
        atomic_write_json({"reference": loaded.name, "method": loaded.spec.method, "dataset": data.name,
                           "backbone": loaded.spec.backbone, "n_train": len(data.train_x), "n_test": len(data.test_x),
                           **out}, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_compare(args) -> int:
    from sslkit.cache import atomic_write_bytes, atomic_write_json
    from sslkit.compare import compare, format_markdown, load_entries, write_figures
    from sslkit.data import load_dataset
    from sslkit.train import resolve_device

    device = resolve_device(args.device)
    for folder in args.runs:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"run folder {folder} does not exist: give the --out folder of a `pretrain` run.")
    methods = args.methods if args.methods is not None else (None if not args.runs else [])
    data = load_dataset("cifar10", args.data_root)
    if args.max_train or args.max_test:
        data = data.subset(args.max_train, args.max_test)
    entries = load_entries(methods, args.runs, device=str(device), data=data)
    print(f"comparing {len(entries)} encoders on {len(data.train_x)} train / {len(data.test_x)} test images of "
          f"{data.name} (fine-tuning: {args.finetune_steps} steps of 128) ...")
    t0 = time.time()
    results = compare(entries, data, draws=args.draws, finetune_steps=args.finetune_steps, device=device)
    table = format_markdown(results)
    print(table)
    print(f"({time.time() - t0:.0f} s)")
    if args.markdown:
        atomic_write_bytes((table + "\n").encode(), args.markdown)
        print(f"wrote {args.markdown}")
    if args.json:
        atomic_write_json({"dataset": data.name, "n_train": len(data.train_x), "n_test": len(data.test_x),
                           "finetune_steps": args.finetune_steps, "results": results}, args.json)
        print(f"wrote {args.json}")
    if args.figures:
        for path in write_figures(results, entries, data, args.figures):
            print(f"wrote {path}")
    return 0


def cmd_course(args) -> int:
    from sslkit import course

    if args.action == "stamp":
        changed = course.stamp_sources(args.source)
        print(f"badges and install cells from {course.SSLKIT_REPO}: {len(changed)} file(s) rewritten")
        return 0
    if args.action == "site":
        index = course.build_site(args.executed, args.out_dir or course.SITE_DIR, args.source, version=args.version)
        print(f"wrote the course website ({'student and instructor versions' if args.version == 'both' else args.version + ' version'}): {index}")
        return 0
    if not args.out_dir:
        raise ValueError(f"course {args.action} needs an output folder, e.g. `python -m sslkit course {args.action} course_{args.action}`.")
    written = course.write_course(args.action, args.out_dir, args.source)
    print(f"wrote the {args.action} version of {len(written)} notebooks to {args.out_dir}")
    return 0


def cmd_demo(args) -> int:
    from sslkit.demo import run_demo

    run_demo(Path(args.out), minutes=args.minutes, device=args.device)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from sslkit.methods import METHODS

    p = _Parser(prog="sslkit", description="Self-supervised learning you can read, run and compare.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("datasets", help="list the named datasets: available where, or how to get them")
    d.add_argument("--data-root", help="data folder (default: $SSLKIT_DATA, else ./data)")
    d.set_defaults(func=cmd_datasets)

    dl = sub.add_parser("download", help="download a named dataset with torchvision")
    dl.add_argument("name")
    dl.add_argument("--data-root")
    dl.set_defaults(func=cmd_download)

    t = sub.add_parser("pretrain", help="self-supervised pre-training; writes checkpoints and history to --out")
    t.add_argument("method", choices=sorted(METHODS))
    t.add_argument("--dataset", required=True, help="a named dataset or a folder of images (train/<class>/*)")
    t.add_argument("--data-root")
    t.add_argument("--backbone", help="small_cnn, resnet18, ... (default: small_cnn on CPU, resnet18 on GPU)")
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=float)
    budget.add_argument("--steps", type=int)
    budget.add_argument("--minutes", type=float, help="a wall-clock training budget instead of epochs or steps")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="steps between checkpoints (default: the profile's; always one at the end)")
    t.add_argument("--temperature", type=float, help="the contrastive temperature (SimCLR, MoCo)")
    t.add_argument("--config", action="append", metavar="KEY=VALUE",
                   help="a method setting, e.g. --config augment.jitter_strength=1.0 (repeatable)")
    t.add_argument("--out", help="run folder (default: runs/<method>-<dataset>-<config hash>)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.set_defaults(func=cmd_pretrain)

    e = sub.add_parser("evaluate", help="kNN, linear and 10-shot accuracy of a run against random init")
    e.add_argument("run_dir")
    e.add_argument("--json", help="also write the results to this file")
    e.add_argument("--data-root")
    e.add_argument("--dataset", help="labelled images to evaluate on instead of the run's own (a named dataset or "
                                     "a folder train/<class>/*.jpg of the same image shape)")
    e.add_argument("--max-train", type=int, help="evaluate on a class-balanced subset of the train split")
    e.add_argument("--max-test", type=int)
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("reference", help="the reference runs: build, list or evaluate the shipped weights")
    r.add_argument("action", choices=["build", "list", "evaluate"])
    r.add_argument("methods", nargs="*", metavar="METHOD", help="build: which (default: all); evaluate: one")
    r.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    r.add_argument("--data-root")
    rb = r.add_mutually_exclusive_group()
    rb.add_argument("--epochs", type=float, help="build: the training budget (default: the recipe's)")
    rb.add_argument("--minutes", type=float, help="build: a wall-clock budget instead of epochs")
    r.add_argument("--config", action="append", metavar="KEY=VALUE", help="build: a method setting of a variant")
    r.add_argument("--name", help="build: store a variant under this name (with --dir)")
    r.add_argument("--dir", help="where the weights and cards are (default: the package's sslkit/references)")
    r.add_argument("--work-dir", default="runs/reference", help="build: where the runs train (resumable)")
    r.add_argument("--eval-subset", type=int, nargs=2, metavar=("N_TRAIN", "N_TEST"),
                   help="build: evaluate on a subset (dry runs); default the full splits")
    r.add_argument("--json", help="evaluate: also write the results to this file")
    r.add_argument("--max-train", type=int, help="evaluate: a class-balanced subset of the train split")
    r.add_argument("--max-test", type=int)
    r.set_defaults(func=cmd_reference)

    c = sub.add_parser("compare", help="every reference (or run folder) side by side: table and figures")
    c.add_argument("--methods", nargs="*", metavar="METHOD", help="references to compare (default: all)")
    c.add_argument("--runs", nargs="*", default=[], metavar="RUN_DIR", help="run folders of `pretrain` to add")
    c.add_argument("--markdown", help="write the table as Markdown to this file")
    c.add_argument("--json", help="write every figure as JSON to this file")
    c.add_argument("--figures", help="write label_efficiency, alignment_uniformity, embeddings and retrieval PNGs here")
    c.add_argument("--data-root")
    c.add_argument("--max-train", type=int, help="a class-balanced subset of the train split (default: all of it)")
    c.add_argument("--max-test", type=int)
    c.add_argument("--finetune-steps", type=int, default=500,
                   help="fine-tuning budget per encoder, the references' (0: none)")
    c.add_argument("--draws", type=int, default=5, help="draws per k-shot probe")
    c.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    c.set_defaults(func=cmd_compare)

    co = sub.add_parser("course", help="student or instructor notebooks, the course website, the Colab badges")
    co.add_argument("action", choices=["student", "instructor", "site", "stamp"])
    co.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help="where to write the notebooks (site: build/site)")
    co.add_argument("--source", help="the instructor notebooks (default: the checkout's notebooks/)")
    co.add_argument("--executed", default="build/executed", help="site: the notebooks `make test` executed")
    co.add_argument("--version", default="both", choices=["both", "student", "instructor"],
                    help="site: whose pages (both: the student pages and the instructor pages, linked to each other)")
    co.set_defaults(func=cmd_course)

    m = sub.add_parser("demo", help="a short SimCLR run on the bundled digits, evaluated, with a figure")
    m.add_argument("--out", default="demo_out")
    m.add_argument("--minutes", type=float, default=1.0)
    m.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    m.set_defaults(func=cmd_demo)
    return p


def _one_line(err: BaseException) -> str:
    """The error as one sentence; an operating-system error the kit did not word itself (a folder
    it cannot read, say) names the file and the reason instead of Python's "[Errno 13] ..."."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        message = f"{err.filename}: {err.strerror.lower()}; check that path and its permissions, then run again."
    else:
        message = str(err) or type(err).__name__
    return re.sub(r"\s+", " ", message).strip()


def main(argv: list[str] | None = None) -> int:
    from sslkit.data import DatasetNotFound
    from sslkit.train import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, DatasetNotFound, FileNotFoundError, TrainingDiverged, RuntimeError, OSError) as err:
        print(f"sslkit: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sslkit: interrupted; an unfinished run resumes when the same command is run again.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
