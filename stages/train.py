"""DVC stage `train@<set>`: train one parameter set's model, logging the run to MLflow.

A resume checkpoint is written every `resume.checkpoint_every` epochs; a training killed
or interrupted (Ctrl-C, SIGTERM) continues from it on the next `dvc repro` / `dvc exp run`.

`torchrun --standalone --nproc-per-node N stages/train.py …` trains on N processes; with
`distributed.processes: N` in params.yaml the stage starts itself that way.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from unmix.cli import output_path, run_stage, stage_parser
from unmix.config import load_config
from unmix.data.subset import load_subset_meta, load_subsets
from unmix.paths import project_root
from unmix.reports.dvc_files import LiveHistory, write_history
from unmix.tracking.datasets import DESCRIPTION_TAG, run_description, subset_datasets
from unmix.tracking.tracker import open_tracker, run_params, run_tags
from unmix.training.distributed import LAUNCHED_ENV, Stopped, join, launch, launched, leave, ranks_from_env
from unmix.training.resume import ResumeCheckpoint, checkpoint_folder


def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    config = load_config(args.params)
    set_config = config.set(args.set_name)
    meta = load_subset_meta(args.data)
    root = project_root(os.environ, Path.cwd())
    name, every = f"train@{args.set_name}", config.resume.checkpoint_every
    ranks = ranks_from_env(os.environ)
    if config.distributed.processes > 1 and not launched(os.environ):
        sys.exit(launch(config.distributed.processes, sys.argv[0], sys.argv[1:], name))
    checkpoint = ResumeCheckpoint(checkpoint_folder(root), args.set_name, set_config, meta["digest"], ranks.world_size)
    # Only a set with a checkpoint or a teacher loads torch before its MLflow run opens (the
    # run to reopen is in the checkpoint; a wrong teacher is one line, no failed run);
    # otherwise the tracking worker starts up while torch loads.
    resume = checkpoint.load() if every else None
    teacher, teacher_tags = None, {}
    if set_config.teacher is not None:
        from unmix.tracking.run_lookup import model_digest
        from unmix.training.distillation import load_teacher

        teacher = load_teacher(set_config.teacher, f"sets.{args.set_name}.teacher", set_config.mix)
        # The path is the parameter; the digest says which weights it held (the file may be replaced).
        teacher_tags = {"unmix.teacher_digest": model_digest(Path(set_config.teacher))}
    tracker = open_tracker(
        config.tracking.enabled and ranks.is_main,  # one MLflow run, opened by rank 0
        config.tracking.uri,
        config.tracking.experiment,
        run_name=args.set_name,
        run_id=(resume or {}).get("mlflow_run_id") or None,
        params=run_params(set_config, config.data),
        tags=run_tags(args.set_name, config.data, meta, root)
        | {DESCRIPTION_TAG: run_description(args.set_name, set_config, config.data, meta)}
        | teacher_tags,
        logs_model=True,
        system_metrics=True,  # CPU, memory; GPU when there is one: the run's System metrics tab
    )
    signal.signal(signal.SIGTERM, stop)  # SIGTERM ends the run as Ctrl-C does
    try:
        with tracker:
            from unmix.model.devices import resolve_device
            from unmix.model.model_file import save_model
            from unmix.model.networks import set_model_config
            from unmix.tracking.run_lookup import model_digest
            from unmix.training.loop import TrainingHooks
            from unmix.training.sets import train_set
            from unmix.training.state import EpochResult

            device = join(ranks, resolve_device(set_config.device, name=f"sets.{args.set_name}.device"))
            subsets = load_subsets(args.data)
            if ranks.is_main:  # the Runs table's Dataset column: what this run trains, validates and tests on
                tracker.log_inputs(subset_datasets(subsets, meta, args.data.as_posix()))
            tracker.wait_open()  # an unreachable store: one line now, not after the training
            if resume is not None and ranks.is_main:
                print(
                    f"resuming {name} from epoch {resume['epoch']}/{set_config.epochs} ({checkpoint.path})", flush=True
                )
            # history.csv grows as the run trains (rank 0, where validation runs), from the
            # resumed epochs on; the write after training below gives the same bytes.
            resumed = [EpochResult(**row) for row in (resume or {}).get("history", [])]
            live_history = LiveHistory(args.history, resumed) if ranks.is_main else None
            hooks = TrainingHooks(
                on_epoch_end=live_history.on_epoch_end if live_history else None,
                on_checkpoint=(lambda state: checkpoint.save(state, tracker.run_id)) if every else None,
                checkpoint_every=every or 1,
                resume=resume,
                ranks=ranks,
            )
            model, history = train_set(set_config, subsets, tracker, device, hooks, teacher)
            leave()
            if not ranks.is_main:
                return  # rank 0 writes the outputs
            trained = time.perf_counter()
            run_id = tracker.run_id
            # Outputs first: a tracking failure reported by finish() must not lose the training.
            save_model(model, args.model, set_model_config(set_config), {"set_name": args.set_name})
            write_history(history, args.history)
            tracker.set_tags({"unmix.model_digest": model_digest(args.model)})  # how evaluate finds the run
            tracker.finish()
            checkpoint.remove()  # only now: after a failed finish() the next run resumes at the end
    except KeyboardInterrupt as interruption:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a launcher stopping the ranks finds this one leaving
        # Under `launch`, a rank stopped by the launcher (SIGTERM) leaves the one line to it.
        quiet = isinstance(interruption, Stopped) and os.environ.get(LAUNCHED_ENV)
        if ranks.is_main and not quiet:
            why = f" ({interruption})" if str(interruption) else ""
            print(
                f"{name}: interrupted{why}; {checkpoint.where(set_config.epochs)}; run `dvc repro` (or the "
                "same `dvc exp run`) again to resume",
                file=sys.stderr,
            )
        sys.exit(130)
    last = history[-1]
    print(
        f"{name}: {set_config.epochs} epochs, {trained - started:.1f} s from start "
        f"(+{time.perf_counter() - trained:.1f} s waiting on MLflow), train/l1 {last.train_l1:.4f}, "
        f"valid/l1 {last.valid_l1:.4f}, run {run_id}; {checkpoint.cost()}"
    )


def stop(signum: int, frame: object) -> None:
    raise Stopped()


if __name__ == "__main__":
    parser = stage_parser(__doc__, with_set=True)
    parser.add_argument("--data", type=Path, default=Path("data/subset"))
    parser.add_argument("--model", type=output_path, required=True)
    parser.add_argument("--history", type=output_path, required=True)
    run_stage(main, parser)
