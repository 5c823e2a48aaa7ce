"""A run's folder: config.json, metrics.jsonl, summary.json and checkpoint.pt, written atomically."""
import json
import os

import torch

from coreaug.files import atomic_write

CHECKPOINT = "checkpoint.pt"


class RunFolder:
    """The files of one run in `path`; nothing is written until `start` is called."""

    def __init__(self, path):
        self.path = os.path.abspath(path)

    def file(self, name):
        return os.path.join(self.path, name)

    def check(self, identity, resume):
        """Refuse a folder holding another run; return its checkpoint when resuming it.

        Raises ValueError when `path` is a file, or holds a run whose config differs from
        `identity`. Returns the checkpoint dict if `resume` and one exists, else None.
        """
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"--out {self.path} is a file; give a folder for the run's outputs")
        config_path = self.file("config.json")
        if not os.path.exists(config_path):
            return None
        with open(config_path) as f:
            previous = json.load(f)
        current = json.loads(json.dumps(identity))  # tuples -> lists, as stored
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            diff = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in changed)
            raise ValueError(f"--out {self.path} already holds a run with a different config ({diff}); "
                             "choose another --out or remove that folder")
        if resume and os.path.exists(self.file(CHECKPOINT)):
            return torch.load(self.file(CHECKPOINT), map_location="cpu", weights_only=False)
        return None

    def start(self, identity, fresh):
        """Create the folder and write config.json; a fresh start removes an old run's files."""
        os.makedirs(self.path, exist_ok=True)
        if fresh:
            for name in ("metrics.jsonl", "summary.json", CHECKPOINT):
                if os.path.exists(self.file(name)):
                    os.unlink(self.file(name))
        atomic_write(self.file("config.json"), lambda f: json.dump(identity, f, indent=2))

    def save_epoch(self, checkpoint, history):
        """Checkpoint first, then the metrics it contains, so the two never disagree."""
        atomic_write(self.file(CHECKPOINT), lambda f: torch.save(checkpoint, f), mode="wb")
        atomic_write(self.file("metrics.jsonl"), lambda f: f.writelines(json.dumps(m) + "\n" for m in history))

    def save_summary(self, summary):
        atomic_write(self.file("summary.json"), lambda f: json.dump(summary, f, indent=2))
