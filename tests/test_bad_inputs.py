"""Every bad input, through the real entry points: one line, exit 1, no traceback, nothing lost.

Each case runs a stage's own command from dvc.yaml (or `dvc repro`) against a tiny project
(its data stages run, or a copy of conftest's fully reproduced one) and checks that it
printed exactly one `error:` line naming the key, file or value and what was expected,
exited non-zero without a traceback, left every earlier output byte-identical and left no
MLflow run RUNNING. Cases that only read (parameters, data sources) share the project and
pass their parameters with `--params`; cases that damage a file work on a copy.

Cases that stop before any work (a parameter, a params file, a data source) run the stage's
script in this process, as `python stages/<x>.py …` would (`runpy`, its argv, its folder,
SystemExit caught, stderr captured): the process adds nothing there. One such case per stage
still runs as a subprocess, as do the cases that need the process (a store, a damaged output,
a dropped privilege, forked workers, `dvc repro`); those are marked `e2e`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import runpy
import shutil
import sqlite3
import subprocess
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import BIN, SEED_ONLY, copy_project, make_tiny_project, run_command, write_params
from test_sources import random_image_set, write_cifar10_archive, write_cifar10_folder
from unmix.config import (
    Config,
    DataConfig,
    DistributedConfig,
    FiguresConfig,
    ResumeConfig,
    SetConfig,
    TrackingConfig,
)

SET = "seed"
OUTPUT_FOLDERS = ("data", "models", "reports")
# Which stage reads each params section: the one that runs it.
SECTION_STAGE = {
    "data": "download",
    "tracking": "train",
    "figures": "render-figures",
    "sets": "train",
    "resume": "train",
    "distributed": "train",
}
assert {SET} == SEED_ONLY


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mlflow_store_template: Path) -> Path:
    """The tiny project with the `seed` set alone and its data stages run (`dvc repro subset`).

    What the cases that only read need (they write their bad params files into it), without
    the training: the fast tier's one small `dvc repro`.
    """
    project = make_tiny_project(tmp_path_factory.mktemp("bad_inputs") / "project", mlflow_store_template)
    write_params(project, lambda p: p.update(sets={SET: p["sets"][SET]}))
    run_command(["dvc", "repro", "subset"], project)
    return project


@pytest.fixture
def copy(reproduced_seed_project: Path, tmp_path: Path) -> Path:
    """A private copy of conftest's project reproduced once per session (every stage's outputs
    and one FINISHED run), for cases that damage it."""
    return copy_project(reproduced_seed_project, tmp_path / "project")


def stage_command(project: Path, stage: str, params: str = "params.yaml") -> list[str]:
    """The stage's command exactly as dvc.yaml runs it, with `--params` when not params.yaml."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    body = stages[stage]
    command = (body["do"]["cmd"] if "foreach" in body else body["cmd"]).replace("${key}", SET).split()
    return command + (["--params", params] if params != "params.yaml" else [])


def outputs_digest(project: Path) -> dict[str, str]:
    """SHA-256 of every file under the stage output folders."""
    return {
        str(path.relative_to(project)): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in OUTPUT_FOLDERS
        for path in sorted((project / folder).rglob("*"))
        if path.is_file()
    }


def running_runs(database: Path) -> list[str]:
    """Ids of runs still RUNNING; a store that is not a database (a damaged one) has none."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            return [row[0] for row in connection.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'")]
    except sqlite3.DatabaseError:
        return []


def unprivileged() -> list[str]:
    """A prefix that runs a command without root's power to write read-only files.

    Tests run as root in CI, where chmod stops nothing: dropping the capabilities that
    override file permissions makes root an ordinary owner of its files.
    """
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


def run(project: Path, command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
        if name not in (env or {}):
            environment.pop(name, None)
    return subprocess.run(command, cwd=project, env=environment, capture_output=True, text=True, timeout=600)


# How a case runs its command: (project, command, env) -> (exit status, stdout, stderr).
Runner = Callable[[Path, list[str], "dict[str, str] | None"], tuple[int, str, str]]


def in_subprocess(project: Path, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run(project, command, env)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Runner:
    """A runner for `python stages/<x>.py …` in this process: its folder, argv and environment."""

    def run_here(project: Path, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
        assert command[0] == "python" and command[1].startswith("stages/"), command
        with monkeypatch.context() as patch:
            patch.chdir(project)
            for name in ("MLFLOW_TRACKING_URI", "DVC_ROOT"):
                patch.delenv(name, raising=False)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            patch.setattr(sys, "argv", command[1:])
            capsys.readouterr()
            try:
                runpy.run_path(str(project / command[1]), run_name="__main__")
                status = 0
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run_here


def expect_one_line_failure(
    project: Path,
    command: list[str],
    *named: str,
    env: dict | None = None,
    store: Path | None = None,
    runner: Runner = in_subprocess,
) -> str:
    """Run `command` (a subprocess unless `runner` says otherwise); assert the failure contract.

    Returns the error line. In this process an exception other than SystemExit fails the
    test with its traceback, as a traceback in a subprocess's stderr does.
    """
    before = outputs_digest(project)
    returncode, stdout, stderr = runner(project, command, env)
    shown = f"$ {' '.join(command)}\n{stdout}\n{stderr}"
    assert returncode != 0, shown
    assert "Traceback" not in stdout + stderr, shown
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, shown
    for fragment in named:
        assert fragment in errors[0], shown
    if "dvc" in command and "repro" in command:
        # Through DVC: outputs are not `persist` (the run cache needs that), so DVC removed the
        # failed stage's outputs before it ran; `dvc checkout` brings the cached ones back (the
        # uncached reports come back from git in a real checkout: docs/reproducibility.md).
        run_command(["dvc", "checkout"], project)
        cached = ("data/", "models/")
        before = {path: digest for path, digest in before.items() if path.startswith(cached)}
        after = {path: digest for path, digest in outputs_digest(project).items() if path.startswith(cached)}
        assert after == before, shown
    else:
        assert outputs_digest(project) == before, shown
    assert running_runs(store or project / "mlflow.db") == [], shown
    return errors[0]


# ---------------------------------------------------------------------------------------------
# params.yaml: every field with a wrong type, a value out of range, an unknown choice

SECTIONS = {
    "data": DataConfig,
    "tracking": TrackingConfig,
    "figures": FiguresConfig,
    "sets": SetConfig,
    "resume": ResumeConfig,
    "distributed": DistributedConfig,
}
WRONG_TYPE = {int: "many", float: "fast", bool: "yes", str: 5}


def field_cases() -> list[tuple[str, str, Any, str]]:
    """(section, key, bad value, what the line must say) for every field of every section."""
    cases = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            if isinstance(hint, types.UnionType):  # `str | None`
                (hint,) = [arg for arg in hint.__args__ if arg is not type(None)]
            cases.append((section, field.name, WRONG_TYPE[hint], "expected"))
            rules = field.metadata
            if "choices" in rules:
                cases.append((section, field.name, "no-such-choice", f"expected one of {', '.join(rules['choices'])}"))
            if "min" in rules:
                below = rules["min"] if rules.get("exclusive") else rules["min"] - 1
                relation = ">" if rules.get("exclusive") else ">="
                cases.append((section, field.name, below, f"expected a value {relation} {rules['min']}"))
            if "max" in rules:
                cases.append((section, field.name, rules["max"] + 1, f"expected a value <= {rules['max']}"))
    return cases


FIELD_CASES = field_cases()


def params_fields() -> set[tuple[str, str]]:
    """Every (section, key) params.yaml can hold, read from `Config` itself, not from SECTIONS."""
    hints = typing.get_type_hints(Config)
    fields = set()
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        if typing.get_origin(cls) is dict:  # sets: a name → SetConfig
            cls = typing.get_args(cls)[1]
        fields |= {(section.name, field.name) for field in dataclasses.fields(cls)}
    return fields


def test_every_config_field_has_cases() -> None:
    """A section or a field of Config without a case here fails: name it in SECTIONS."""
    covered = {(section, key) for section, key, _, _ in FIELD_CASES}
    assert sorted(params_fields() - covered) == [], "fields of params.yaml without a bad-input case"
    assert set(SECTION_STAGE) == set(SECTIONS), "every section needs the stage that reads it"
    # Each rule a field declares (choices, a minimum, a maximum) has its case too.
    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            cases = [expected for s, key, _, expected in FIELD_CASES if (s, key) == (section, field.name)]
            for rule, says in (
                ("choices", "expected one of"),
                ("min", "expected a value >"),
                ("max", "expected a value <="),
            ):
                if rule in field.metadata:
                    assert any(says in expected for expected in cases), f"{section}.{field.name}: no {rule} case"


def write_bad_params(project: Path, name: str, edit: Callable[[dict], None]) -> str:
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    path = project / f"bad-{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path.name


def check_bad_field(built: Path, section: str, key: str, value: Any, expected: str, runner: Runner) -> None:
    def edit(params: dict) -> None:
        (params[section][SET] if section == "sets" else params[section])[key] = value

    name = f"{section}.{key}"
    params = write_bad_params(built, name, edit)
    dotted = f"sets.{SET}.{key}" if section == "sets" else name
    line = expect_one_line_failure(
        built, stage_command(built, SECTION_STAGE[section], params), dotted, expected, runner=runner
    )
    assert line.startswith(f"error: {params}: {dotted}: "), line


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"), FIELD_CASES, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in FIELD_CASES]
)
def test_bad_field_value(built: Path, in_process: Runner, section: str, key: str, value: Any, expected: str) -> None:
    check_bad_field(built, section, key, value, expected, in_process)


# One field case for each stage that reads a section, through the real process.
PROCESS_FIELD_CASES = [
    next(case for case in FIELD_CASES if SECTION_STAGE[case[0]] == stage)
    for stage in dict.fromkeys(SECTION_STAGE.values())
]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    PROCESS_FIELD_CASES,
    ids=[f"{s}.{k}={v!r}" for s, k, v, _ in PROCESS_FIELD_CASES],
)
def test_bad_field_value_in_the_stage_process(built: Path, section: str, key: str, value: Any, expected: str) -> None:
    check_bad_field(built, section, key, value, expected, in_subprocess)


STRUCTURE_CASES = {
    "unknown section": (lambda p: p.update(trainig={"epochs": 3}), "train", ["trainig: unknown key; expected one of"]),
    "unknown data key": (lambda p: p["data"].update(n_trian=5), "download", ["data.n_trian: unknown key"]),
    "unknown set key": (
        lambda p: p["sets"][SET].update(epoch=5),
        "train",
        [f"sets.{SET}.epoch: unknown key", "epochs"],
    ),
    "empty sets map": (lambda p: p.update(sets={}), "download", ["sets: expected a mapping of at least one"]),
    "sets not a map": (lambda p: p.update(sets=[SET]), "download", ["sets: expected a mapping"]),
    "a set not a map": (lambda p: p["sets"].update({SET: 5}), "train", [f"sets.{SET}: expected a mapping, got int"]),
    "section not a map": (lambda p: p.update(data="shapes"), "download", ["data: expected a mapping, got str"]),
    "bad set name": (lambda p: p["sets"].update({"a b": {}}), "download", ["sets.a b: set names must be"]),
    "too few generated images": (
        lambda p: p["data"].update(n_test=100),
        "download",
        ["data.n_test = 100: more than the 40 test images"],
    ),
    "more figure rows than pairs": (
        lambda p: p["figures"].update(n_pairs=7),
        "render-figures",
        ["figures.n_pairs = 7: more than the 6 test pairs"],
    ),
    "imagefolder without a path": (
        lambda p: p["data"].update(source="imagefolder", path=None),
        "download",
        ["data.path: required for data.source=imagefolder"],
    ),
    "muon without a unet": (
        lambda p: p["sets"][SET].update(optimizer="muon"),
        "train",
        [f"sets.{SET}.optimizer: muon steps the convolutions that feed a BatchNorm; arch seed has none"],
    ),
    "low-resolution epochs without a unet": (
        lambda p: p["sets"][SET].update(low_res_epochs=1),
        "train",
        [f"sets.{SET}.low_res_epochs = 1: arch seed takes 32×32 images only"],
    ),
    "a teacher at weight 0": (
        lambda p: p["sets"][SET].update(teacher="models/long.pt", teacher_weight=0),
        "train",
        [f"sets.{SET}.teacher_weight = 0: the teacher models/long.pt would be loaded and run for nothing"],
    ),
}


@pytest.mark.parametrize("case", list(STRUCTURE_CASES))
def test_bad_structure(built: Path, in_process: Runner, case: str) -> None:
    edit, stage, named = STRUCTURE_CASES[case]
    params = write_bad_params(built, case.replace(" ", "-"), edit)
    expect_one_line_failure(built, stage_command(built, stage, params), f"{params}: ", *named, runner=in_process)


def test_a_missing_teacher_file_stops_the_train_stage_before_training(built: Path, in_process: Runner) -> None:
    params = write_bad_params(built, "missing-teacher", lambda p: p["sets"][SET].update(teacher="models/long.pt"))
    line = expect_one_line_failure(built, stage_command(built, "train", params), runner=in_process)
    assert line == (
        f"error: sets.{SET}.teacher: models/long.pt: no such model file; expected a models/<set>.pt "
        "written by a train stage"
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("data: {source: shapes\n", "not valid YAML"),  # an unclosed flow mapping
        ("data:\n  source: shapes\n n_train: 5\n", "not valid YAML"),  # indentation
        ("- data\n- sets\n", "expected a mapping with data, tracking, figures and sets"),
        ("", "expected a mapping with data, tracking, figures and sets"),
        ("data: !!python/object:os.system {}\n", "not valid YAML"),
        (b"data:\n  source: \xff\xfe\n", "not UTF-8 text (byte 16); expected a YAML file"),
        ("sets:\n  seed: {epochs: 3}\n  seed: {epochs: 4}\n", "not valid YAML (duplicate key 'seed' on line 3)"),
    ],
    ids=["unclosed", "indentation", "a list", "empty file", "a python tag", "not UTF-8", "a key twice"],
)
def test_params_file_that_does_not_parse(built: Path, in_process: Runner, text: str | bytes, named: str) -> None:
    path = built / "unparsable.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    expect_one_line_failure(
        built, stage_command(built, "train", "unparsable.yaml"), "unparsable.yaml: ", named, runner=in_process
    )


def test_missing_params_file_and_unknown_set(built: Path, in_process: Runner) -> None:
    expect_one_line_failure(
        built, stage_command(built, "download", "absent.yaml"), "absent.yaml: params file not found", runner=in_process
    )
    command = [part if part != SET else "sed" for part in stage_command(built, "train")]
    expect_one_line_failure(built, command, "sets.sed: no such parameter set; known: seed", runner=in_process)


# ---------------------------------------------------------------------------------------------
# Image folders and CIFAR-10: missing, empty, corrupt


def save_images(folder: Path, count: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def image_tree(root: Path, case: str) -> tuple[Path, list[str]]:
    """Build the damaged tree for `case`; return data.path and what the error must name."""
    if case == "missing":
        return root / "absent", [f"data.path={root / 'absent'}: not a directory; expected"]
    root.mkdir()
    if case == "empty":
        return root, [f"{root}: no class folders; expected {root}/<class>/<image>"]
    save_images(root / "cat", 3)
    if case == "class without images":
        (root / "dog").mkdir()
        (root / "dog" / "notes.txt").write_text("no pictures here")
        return root, [f"{root / 'dog'}: no images; expected files ending in one of"]
    if case == "undecodable":
        (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        return root, [f"{root / 'cat' / 'broken.jpg'}: cannot read as an image", "delete or replace it"]
    if case == "truncated":
        good = root / "cat" / "0.png"
        (root / "cat" / "cut.png").write_bytes(good.read_bytes()[:60])
        return root, [f"{root / 'cat' / 'cut.png'}: cannot read as an image"]
    if case == "undecodable among many":  # enough files for the decoding worker processes
        save_images(root / "dog", 1100)
        (root / "dog" / "zzz.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        return root, [f"{root / 'dog' / 'zzz.png'}: cannot read as an image"]
    if case == "test class unknown to train":
        shutil.move(root / "cat", root / "train" / "cat")
        save_images(root / "test" / "cat", 2)
        save_images(root / "test" / "horse", 2)
        return root, [f"{root / 'test'}: classes ['horse'] are not in the train split's ['cat']"]
    if case == "empty test split":
        shutil.move(root / "cat", root / "train" / "cat")
        (root / "test").mkdir()
        return root, [f"{root / 'test'}: no class folders"]
    raise ValueError(case)


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "class without images",
        "undecodable",
        "truncated",
        "test class unknown to train",
        "empty test split",
    ],
)
def test_bad_image_folder(built: Path, tmp_path: Path, in_process: Runner, case: str) -> None:
    path, named = image_tree(tmp_path / "images", case)
    params = write_bad_params(built, "imagefolder", lambda p: p["data"].update(source="imagefolder", path=str(path)))
    expect_one_line_failure(built, stage_command(built, "download", params), *named, runner=in_process)


@pytest.mark.e2e  # the decoding workers are forked: from a stage process, not from pytest's
def test_bad_image_among_many_in_the_stage_process(built: Path, tmp_path: Path) -> None:
    path, named = image_tree(tmp_path / "images", "undecodable among many")
    params = write_bad_params(built, "imagefolder", lambda p: p["data"].update(source="imagefolder", path=str(path)))
    expect_one_line_failure(built, stage_command(built, "download", params), *named)


@pytest.mark.e2e
def test_image_folder_with_too_few_images_stops_the_subset_stage(copy: Path, tmp_path: Path) -> None:
    save_images(tmp_path / "few" / "cat", 10)
    params = write_bad_params(copy, "few", lambda p: p["data"].update(source="imagefolder", path=str(tmp_path / "few")))
    assert run(copy, stage_command(copy, "download", params)).returncode == 0  # 10 images are a valid source
    expect_one_line_failure(
        copy,
        stage_command(copy, "subset", params),
        "data.n_train + data.n_valid + data.n_test = 52: more than the 10 images",
    )


def cifar10_case(folder: Path, case: str) -> list[str]:
    """Damage a CIFAR-10 folder the way `case` says; return what the error must name."""
    folder.mkdir()
    archive = folder / "cifar-10-python.tar.gz"
    if case == "archive not gzip":
        archive.write_bytes(b"this is not an archive")
        return [f"{archive}: cannot extract", "delete it and download it again"]
    if case == "archive truncated":
        whole = write_cifar10_archive(folder / "staging", random_image_set(50, 0), random_image_set(20, 1))
        archive.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        shutil.rmtree(folder / "staging")
        return [f"{archive}: cannot extract"]
    if case == "archive of something else":
        import tarfile

        (folder / "readme.txt").write_text("hello")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder / "readme.txt", arcname="readme.txt")
        return [f"{archive}: has no cifar-10-batches-py/ folder; expected CIFAR-10's python version"]
    write_cifar10_folder(folder, random_image_set(50, 0), random_image_set(20, 1))
    batch = folder / "cifar-10-batches-py" / "data_batch_3"
    if case == "batch garbage":
        batch.write_bytes(b"\x80\x02garbage")
        return [f"{batch}: not a CIFAR-10 pickle"]
    if case == "batch missing":
        batch.unlink()
        return [f"{batch}: missing"]
    raise ValueError(case)


@pytest.mark.parametrize(
    "case", ["archive not gzip", "archive truncated", "archive of something else", "batch garbage", "batch missing"]
)
def test_corrupt_cifar10(built: Path, tmp_path: Path, in_process: Runner, case: str) -> None:
    named = cifar10_case(tmp_path / "cifar", case)
    cifar = str(tmp_path / "cifar")
    params = write_bad_params(built, "cifar", lambda p: p["data"].update(source="cifar10", path=cifar))
    expect_one_line_failure(built, stage_command(built, "download", params), *named, runner=in_process)


# ---------------------------------------------------------------------------------------------
# Earlier stages' outputs, damaged: each stage names the file and the stage that writes it


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


DAMAGED_FILES = {
    # file: (damage, stage that reads it, the stage named as its maker)
    "data/raw/train.npz": (truncate, "subset", "download"),
    "data/subset/train.npz": (truncate, "train", "subset"),
    "data/subset/test.npz": (lambda p: p.write_bytes(b"PK\x03\x04 not a zip"), "evaluate", "subset"),
    "data/subset/meta.json": (lambda p: p.write_text('{"source": '), "train", "subset"),
    f"models/{SET}.pt": (lambda p: p.write_bytes(os.urandom(4096)), "evaluate", "train"),
    f"models/{SET}.pt#truncated": (truncate, "evaluate", "train"),
    f"data/eval/{SET}.npz": (truncate, "render-figures", "evaluate"),
    f"reports/{SET}/metrics.json": (lambda p: p.write_text("[1, 2]"), "render-figures", "evaluate"),
    f"reports/{SET}/history.csv": (lambda p: p.write_text("epoch,loss\n1,0.5\n"), "render-figures", "train"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(DAMAGED_FILES))
def test_damaged_earlier_output(copy: Path, name: str) -> None:
    damage, stage, maker = DAMAGED_FILES[name]
    relative = name.split("#")[0]
    damage(copy / relative)
    expect_one_line_failure(
        copy, stage_command(copy, stage), f"{relative}: unreadable", f"expected the {maker} stage's output"
    )


# ---------------------------------------------------------------------------------------------
# The MLflow store: corrupt, read-only, not a file, not a store at all


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_corrupt_store(copy: Path, stage: str) -> None:
    (copy / "mlflow.db").write_bytes(b"SQLite format 2\0" + os.urandom(8192))
    expect_one_line_failure(
        copy, stage_command(copy, stage), f"{copy / 'mlflow.db'}: not a usable MLflow SQLite store", "move it aside"
    )


@pytest.mark.e2e
def test_truncated_store_given_by_environment(copy: Path, tmp_path: Path) -> None:
    store = tmp_path / "elsewhere.db"
    store.write_bytes((copy / "mlflow.db").read_bytes()[:100])
    expect_one_line_failure(
        copy,
        stage_command(copy, "train"),
        f"{store}: not a usable MLflow SQLite store",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"},
        store=store,
    )


@pytest.mark.e2e
def test_read_only_store(copy: Path) -> None:
    (copy / "mlflow.db").chmod(0o444)
    expect_one_line_failure(
        copy, unprivileged() + stage_command(copy, "train"), f"{copy / 'mlflow.db'}: the MLflow store is read-only"
    )


@pytest.mark.e2e
def test_store_in_a_read_only_folder(copy: Path, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    shutil.copy(copy / "mlflow.db", folder / "mlflow.db")
    folder.chmod(0o555)
    try:
        expect_one_line_failure(
            copy,
            unprivileged() + stage_command(copy, "train"),
            f"{folder / 'mlflow.db'}: the MLflow store is read-only",
            "writable folder",
            env={"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"},
            store=folder / "mlflow.db",
        )
    finally:
        folder.chmod(0o755)


@pytest.mark.e2e
def test_store_that_is_a_folder(copy: Path) -> None:
    (copy / "mlflow.db").unlink()
    (copy / "mlflow.db").mkdir()
    expect_one_line_failure(copy, stage_command(copy, "evaluate"), f"{copy / 'mlflow.db'}: not a file")


@pytest.mark.e2e
@pytest.mark.parametrize("uri", ["mlflow.db", "ftp://host/mlflow"])
def test_tracking_uri_that_is_no_store(built: Path, uri: str) -> None:
    params = write_bad_params(built, "uri", lambda p: p["tracking"].update(uri=uri))
    expect_one_line_failure(
        built,
        stage_command(built, "train", params),
        f"tracking.uri={uri}: not a tracking store",
        "expected sqlite:///<file>",
    )


# ---------------------------------------------------------------------------------------------
# Outputs that cannot be written: a parent that is a file, a read-only folder


@pytest.mark.e2e
def test_output_whose_parent_is_a_file(copy: Path) -> None:
    shutil.rmtree(copy / "reports" / SET)
    (copy / "reports" / SET).write_text("a file where the set's folder should be")
    expect_one_line_failure(
        copy,
        stage_command(copy, "train"),
        f"reports/{SET}/history.csv: cannot be written",
        "expected a writable folder",
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("stage", "folder"), [("train", "models"), ("evaluate", f"reports/{SET}"), ("download", "data"), ("subset", "data")]
)
def test_read_only_output_folder(copy: Path, stage: str, folder: str) -> None:
    (copy / folder).chmod(0o555)
    try:
        expect_one_line_failure(
            copy,
            unprivileged() + stage_command(copy, stage),
            "cannot be written",
            "Permission denied",
            f"expected a writable folder {folder}",
        )
    finally:
        (copy / folder).chmod(0o755)


# ---------------------------------------------------------------------------------------------
# Through `dvc repro`: the stage's one line reaches the user, and `dvc checkout` gives the outputs back


@pytest.mark.e2e
def test_dvc_repro_bad_choice(copy: Path) -> None:
    write_params(copy, lambda p: p["sets"][SET].update(mix="sum"))
    expect_one_line_failure(
        copy,
        ["dvc", "repro"],
        f"params.yaml: sets.{SET}.mix: expected one of quarter_sum, mean, half_difference, got 'sum'",
    )


@pytest.mark.e2e
def test_dvc_repro_read_only_store(copy: Path) -> None:
    write_params(copy, lambda p: p["sets"][SET].update(epochs=2))  # something to re-run
    (copy / "mlflow.db").chmod(0o444)
    expect_one_line_failure(copy, unprivileged() + ["dvc", "repro"], "the MLflow store is read-only")


@pytest.mark.e2e
def test_dvc_repro_corrupt_image_folder(copy: Path, tmp_path: Path) -> None:
    path, named = image_tree(tmp_path / "images", "undecodable")
    write_params(copy, lambda p: p["data"].update(source="imagefolder", path=str(path)))
    expect_one_line_failure(copy, ["dvc", "repro"], *named)
