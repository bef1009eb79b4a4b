"""The fixes for a model that memorizes its training set, with their numbers from the run: where
to stop, how much weight decay, which augmentation, where dropout goes, how much smaller."""

from __future__ import annotations

from ..findings import Fix
from ..formatting import fmt
from ..layers import DROPOUT_TYPES
from ..timeline import EvalPass, ModelInfo, Timeline
from ._numbers import nice


def early_stopping(at: EvalPass, where: str, loss: float | None, acc: float | None, after: int, patience: int,
                    criterion: str) -> Fix:
    by_acc = criterion == "val_accuracy_drop" and acc is not None
    metric = f"val accuracy {acc:.1%}" if by_acc else f"val loss {fmt(loss)}"
    snippet = (
        f"best, bad = {'-' if by_acc else ''}float('inf'), 0\n"
        "for epoch in range(epochs):\n"
        "    train_one_epoch(model, train_loader, optimizer)\n"
        f"    score = {'-' if by_acc else ''}evaluate(model, val_loader)   # {'accuracy' if by_acc else 'loss'}\n"
        "    if score < best:\n"
        "        best, bad = score, 0\n"
        "        torch.save(model.state_dict(), 'best.pt')\n"
        "    else:\n"
        "        bad += 1\n"
        f"        if bad >= {patience}:\n"
        "            break\n"
        "model.load_state_dict(torch.load('best.pt'))"
    )
    return Fix(
        "early_stopping",
        f"Stop when the validation {'accuracy' if by_acc else 'loss'} has not improved for {patience} evaluations, "
        f"and keep the checkpoint of {where} ({metric}): the {after} evaluations after it only made it worse.",
        {"epoch": at.epoch, "step": at.step, "patience": patience,
         "val_accuracy" if by_acc else "val_loss": acc if by_acc else loss},
        snippet,
    )


def weight_decay(tl: Timeline) -> Fix | None:
    hp = tl.optimizer_hparams
    opt = tl.optimizer_name(None)
    wd = float(hp.get("weight_decay") or 0.0)
    lr = hp.get("lr") if hp.get("lr") is not None else tl.last_lr
    adaptive = opt in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax")
    target = opt
    if opt == "Adam":
        target = "AdamW"  # Adam's weight_decay is an L2 term its adaptive scaling weakens; AdamW decouples it
        new = 0.01 if wd == 0 else nice(max(0.01, 10 * wd))
    elif adaptive:
        new = 0.01 if wd == 0 else nice(10 * wd)
    else:
        new = 5e-4 if wd == 0 else nice(10 * wd)
    cap = 0.1 if adaptive else 1e-2
    if wd >= cap and opt != "Adam":
        return None  # already strong; more would hurt the fit before it helps
    new = min(new, cap)
    args = [f"lr={lr:g}"] if isinstance(lr, (int, float)) and lr else []
    if not adaptive and hp.get("momentum"):
        args.append(f"momentum={hp['momentum']:g}")
    args.append(f"weight_decay={new:g}")
    what = f"Raise the weight decay from {wd:g} to {new:g}" if wd else f"Add weight decay {new:g} (there is none now)"
    switch = ", and switch from Adam to AdamW, whose decay the adaptive step sizes do not weaken" \
        if opt == "Adam" else ""
    return Fix(
        "add_weight_decay",
        f"{what}{switch}.",
        {"weight_decay": new, "current_weight_decay": wd, "optimizer": target or "SGD"},
        f"optimizer = torch.optim.{target or 'SGD'}(model.parameters(), {', '.join(args)})",
    )


def augment(model: ModelInfo | None) -> Fix | None:
    shape = model.input_shape if model else None
    if not shape or len(shape) != 4:
        return None
    _, channels, h, w = shape
    if channels > 4 or h < 8 or w < 8:
        return None
    size = h if h == w else (h, w)
    pad = max(1, min(h, w) // 8)
    steps = [f"T.RandomCrop({size}, padding={pad})", "T.RandomHorizontalFlip()"]
    if channels == 3:
        steps.append("T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2)")
    body = "".join(f"    {s},\n" for s in steps)
    return Fix(
        "augment_data",
        f"Augment the training images ({channels}x{h}x{w}): random crops with {pad}-pixel padding and horizontal "
        "flips (only if a mirrored image keeps its label: not for digits or text)"
        + (", and colour jitter" if channels == 3 else "") + ". Training set only; validation stays as it is.",
        {"transforms": steps, "input_shape": list(shape), "padding": pad, "flip": True},
        "import torchvision.transforms.v2 as T\n"
        f"train_transform = T.Compose([\n{body}])\n"
        "# in the training Dataset's __getitem__, or on each training batch: x = train_transform(x)",
    )


def dropout(tl: Timeline, model: ModelInfo | None) -> Fix | None:
    if model is None:
        return None
    linears = [n for n, t in model.module_types.items() if t == "Linear"]
    dropouts = model.modules_of_type(DROPOUT_TYPES)
    if dropouts:
        return Fix(
            "add_dropout",
            f"The model already has dropout ({', '.join(dropouts[:3])}): raise its p (towards 0.5 before the "
            "last linear layers) or add weight decay instead.",
            {"modules": dropouts, "p": 0.5},
            "nn.Dropout(p=0.5)",
        )
    names = list(model.module_types)
    # Dropout before a linear layer that has something before it: the classifier head.
    head = [n for n in linears if names.index(n) > 0][-2:]
    if not head:
        return None
    shown = " and ".join(tl.label(n) for n in head)
    return Fix(
        "add_dropout",
        f"Add dropout before {shown}: p=0.5 before the last one"
        + (", 0.3 before the one before." if len(head) > 1 else "."),
        {"before": head, "p": dict(zip(head, [0.3, 0.5][-len(head):], strict=True))},
        "nn.Sequential(..., nn.ReLU(), nn.Dropout(p=0.5), nn.Linear(hidden, classes))",
    )


def smaller_model(model: ModelInfo | None) -> Fix | None:
    if model is None or not model.num_params:
        return None
    n = model.trainable_params or model.num_params
    return Fix(
        "reduce_model_size",
        f"The model has {_count(n)} trainable parameters; if the training set is small, halve the widths of its "
        f"hidden layers (channels, features): about 4x fewer parameters, ~{_count(n // 4)}.",
        {"num_params": n, "suggested_params": n // 4},
    )


# -- helpers ------------------------------------------------------------------------------


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1000:
        return f"{n / 1000:.0f}k"
    return str(n)
