"""DVC stage `train@<set>`: train one parameter set's model, logging the run to MLflow."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from unmix.cli import output_path, run_stage, stage_parser
from unmix.config import load_config
from unmix.paths import project_root
from unmix.reporting import write_history
from unmix.subset import load_subset_meta, load_subsets
from unmix.tracking import open_tracker, run_params, run_tags


def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    config = load_config(args.params)
    set_config = config.set(args.set_name)
    meta = load_subset_meta(args.data)
    tracker = open_tracker(
        config.tracking.enabled,
        config.tracking.uri,
        config.tracking.experiment,
        run_name=args.set_name,
        params=run_params(set_config, config.data),
        tags=run_tags(args.set_name, config.data, meta, project_root(os.environ, Path.cwd())),
        logs_model=True,
    )
    with tracker:
        # Imported only now: the tracking process starts up (imports, store, run) on the
        # other core while this one loads torch.
        from unmix.devices import resolve_device
        from unmix.experiment import set_model_config, train_set
        from unmix.models import save_checkpoint

        device = resolve_device(set_config.device, name=f"sets.{args.set_name}.device")
        model, history = train_set(set_config, load_subsets(args.data), tracker, device)
        trained = time.perf_counter()
        run_id = tracker.run_id
        # Outputs first: a tracking failure reported by finish() must not lose the training.
        save_checkpoint(model, args.model, set_model_config(set_config),
                        {"set_name": args.set_name, "mlflow_run_id": run_id})
        write_history(history, args.history)
        tracker.finish()
    last = history[-1]
    print(f"train@{args.set_name}: {set_config.epochs} epochs, {trained - started:.1f} s from start "
          f"(+{time.perf_counter() - trained:.1f} s waiting on MLflow), train/l1 {last.train_l1:.4f}, "
          f"valid/l1 {last.valid_l1:.4f}, run {run_id}")


if __name__ == "__main__":
    parser = stage_parser(__doc__, with_set=True)
    parser.add_argument("--data", type=Path, default=Path("data/subset"))
    parser.add_argument("--model", type=output_path, required=True)
    parser.add_argument("--history", type=output_path, required=True)
    run_stage(main, parser)
