"""DVC stage `evaluate@<set>`: test metrics on the fixed pairs, beside the trivial baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from unmix.cli import output_path, run_stage, stage_parser
from unmix.config import load_config
from unmix.data.imageset import write_npz_atomically
from unmix.data.subset import load_subset_meta, load_subsets
from unmix.reports.dvc_files import write_metrics
from unmix.tracking.datasets import subset_datasets
from unmix.tracking.run_lookup import model_digest, run_tags_for
from unmix.tracking.tracker import open_tracker


def main(args: argparse.Namespace) -> None:
    # torch is imported here, not at the top: the tracking process re-imports this module
    # and needs none of it.
    from unmix.evaluation.scoring import evaluate_set
    from unmix.model.devices import resolve_device
    from unmix.model.model_file import load_model

    config = load_config(args.params)
    set_config = config.set(args.set_name)
    device = resolve_device(set_config.device, name=f"sets.{args.set_name}.device")
    model, _ = load_model(args.model)
    digest = model_digest(args.model)
    subsets = load_subsets(args.data)
    # The run that trained this very file (train tagged it with the file's digest).
    tracker = open_tracker(
        config.tracking.enabled,
        config.tracking.uri,
        config.tracking.experiment,
        run_name=args.set_name,
        find_tags=run_tags_for(args.set_name, digest),
    )
    (test_data,) = subset_datasets(subsets, load_subset_meta(args.data), args.data.as_posix(), splits=["test"])
    with tracker:
        tracker.wait_open()  # an unreachable store: one line now, not after the evaluation
        tracker.log_inputs([test_data])  # train logged it already (then a no-op); a fresh run has it too
        # The test metrics on the model's page and the Models tab, judged on the test pairs.
        tracker.link_metrics("test/", test_data)
        evaluation = evaluate_set(model, set_config, subsets, tracker, device)
        # Outputs first: a tracking failure reported by finish() must not lose the metrics.
        # The per-pair file before metrics.json: render-figures depends on it.
        write_npz_atomically(
            args.outputs,
            {
                "output_1": evaluation.output_1,
                "output_2": evaluation.output_2,
                "model_digest": digest,  # render-figures finds the run by it
                **evaluation.per_pair,
            },
        )
        write_metrics(evaluation.metrics, args.metrics)
        tracker.finish()
    test, baseline = evaluation.metrics["test"], evaluation.metrics["baseline"]
    print(
        f"evaluate@{args.set_name}: {test['n_pairs']} pairs, PSNR {test['best']['psnr']:.2f} dB "
        f"(baseline {baseline['best']['psnr']:.2f}), seed L1 {test['seed_l1']:.4f} "
        f"(baseline {baseline['seed_l1']:.4f})"
    )

    # The Model Registry: the run's model becomes a version of unmix-<set>, `champion` the best.
    from unmix.tracking.registry import register_evaluation

    register_evaluation(config.tracking, args.set_name, tracker.run_id, evaluation.metrics, args.data)


if __name__ == "__main__":
    parser = stage_parser(__doc__, with_set=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("data/subset"))
    parser.add_argument("--metrics", type=output_path, required=True)
    parser.add_argument("--outputs", type=output_path, required=True, help="per-pair outputs and scores (.npz)")
    run_stage(main, parser)
