"""Checks the benchmark scripts make on their arguments before measuring anything, so that a
run of minutes is not lost at its end, nor timed against the wrong code."""
import os


def checked(parser, args):
    """`args` (from `parser`) once checked: a CUDA `--device` needs a CUDA build of torch and a GPU,
    a `--baseline`/`--before-code` folder must hold a coreaug package (else the installed coreaug,
    this tree, would be timed as the baseline), and `--out`'s folder is made now."""
    device = getattr(args, "device", None)
    if device and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {device} needs a CUDA build of torch and a GPU (--device cpu runs on the CPU)")
    for flag in ("baseline", "before_code"):
        folder = getattr(args, flag, None)
        if folder and not os.path.isfile(os.path.join(folder, "coreaug", "__init__.py")):
            parser.error(f"--{flag.replace('_', '-')} {folder} holds no coreaug package (coreaug/__init__.py): "
                         "give the folder of a checkout (git worktree add DIR COMMIT), not the package itself")
    out = getattr(args, "out", None)
    if isinstance(out, (str, os.PathLike)) and str(out) not in ("", "-"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    return args
