"""The results layout: where runs write, what they write, and how it is read back.

``<results_dir>/<experiment>/<ablation>/<width>/<adjoint_option>/<experiment_no>/`` holds one
``.npy`` per series (names as the paper's code), a ``summary.json`` and, with
``--save_model 1``, ``checkpoint.pt`` (every epoch); a finished run whose state is small
(:data:`FINAL_STATE_LIMIT`) also keeps ``final_state.pt``, committed with it, so that it can
be extended to more epochs on any clone; experiments whose figures need the trained model
(Ornstein–Uhlenbeck) also write its final weights, ``weights.npz`` (small, committed,
unlike checkpoints); ``<results_dir>/toy_gradient/<method>/`` holds the
toy gradient's errors. Every file is written atomically. This module is the only writer
of results and what plotting, the summary tables and the sweeps read them through (its
command line, ``python -m experiments.results complete FOLDER``, exits 0 if that run
finished).
"""

import io
import json
import os
import pathlib
import stat
import sys
import zipfile

import numpy as np
import torch

from common.atomic import save_json, save_npy, save_npz, save_torch, write_bytes

#: The committed runs of the reproduction: what the figures, tables and report read by
#: default. Commands write here only when asked (``--results_dir results``).
RESULTS_DIR = pathlib.Path(__file__).resolve().parents[1] / 'results'
#: The repository's root: paths under it are recorded relative to it (:func:`portable`).
REPOSITORY = RESULTS_DIR.parent
#: Where commands write by default (ignored by git): a user's runs never mix into the
#: committed ones, nor make the tests of those fail.
RUNS_DIR = REPOSITORY / 'runs'

#: Per-epoch series (epoch 0 = before training) and the parameter count.
SERIES = (
    'nparams',
    'epoch_times',
    'epoch_cpu_times',
    'epoch_loss_history',
    'epoch_val_metric_history',
    'epoch_fnfe_history',
    'epoch_bnfe_history',
    'epochs',
)
#: Series that runs made before they were recorded lack: a run is complete without them.
OPTIONAL_SERIES = ('epoch_cpu_times',)
SUMMARY = 'summary.json'
CHECKPOINT = 'checkpoint.pt'
#: A finished run's whole state (as a checkpoint), kept where it fits in
#: FINAL_STATE_LIMIT bytes; git ignores checkpoint.pt but keeps this file.
FINAL_STATE = 'final_state.pt'
FINAL_STATE_LIMIT = 5 * 2**20
WEIGHTS = 'weights.npz'


def portable(path):
    """``path`` as recorded in a summary: relative to the repository where it lies inside
    it (so that committed summaries hold no machine's absolute paths), else as given."""
    resolved = pathlib.Path(path).resolve()
    try:
        return resolved.relative_to(REPOSITORY).as_posix()
    except ValueError:
        return str(path)


def run_dir(results_dir, experiment, ablation, width, adjoint_option, experiment_no):
    """Folder of one run."""
    return (
        pathlib.Path(results_dir)
        / experiment
        / str(ablation)
        / str(width)
        / adjoint_option
        / str(experiment_no)
    )


def write_history(folder, history):
    """Write every series of ``history`` (dict name -> list or number) as ``<name>.npy``."""
    for name in SERIES:
        if name in OPTIONAL_SERIES and name not in history:
            continue
        save_npy(pathlib.Path(folder) / f'{name}.npy', np.asarray(history[name]))


def write_summary(folder, summary):
    """Write ``summary.json`` (arguments, versions, device, final figures, completeness)."""
    save_json(pathlib.Path(folder) / SUMMARY, summary)


def write_checkpoint(folder, checkpoint):
    """Write a run's checkpoint (a dict of state dicts, history and RNG states, all of
    types ``torch.load(..., weights_only=True)`` reads)."""
    save_torch(pathlib.Path(folder) / CHECKPOINT, checkpoint)


def write_final_state(folder, checkpoint):
    """Keep a finished run's ``checkpoint`` as ``final_state.pt`` if it takes at most
    :data:`FINAL_STATE_LIMIT` bytes (a larger one is kept only as ``checkpoint.pt``, with
    ``--save_model 1``, and not committed); returns whether it was written."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    if buffer.tell() > FINAL_STATE_LIMIT:
        return False
    write_bytes(pathlib.Path(folder) / FINAL_STATE, buffer.getvalue())
    return True


class ResultsError(Exception):
    """A results file that cannot be read; the message names it and says what to do."""


def _unreadable(path, error, advice):
    return ResultsError(f'{path} cannot be read ({type(error).__name__}: {error}); {advice}')


#: The largest file of each kind the readers open: far above what any run of the paper's
#: widths writes, far below what would exhaust memory. A larger file is refused unread.
MAX_BYTES = {
    SUMMARY: 2**20,
    '.npy': 2**24,
    WEIGHTS: 2**30,
    CHECKPOINT: 2**32,
    FINAL_STATE: 2**32,
}


def _checked_file(path, advice):
    """Refuse, naming ``path``, what the repository never writes there: a symbolic link, a
    FIFO or device (reading one can hang or never end), or a file above
    :data:`MAX_BYTES`."""
    try:
        status = os.lstat(path)
    except OSError as error:
        raise _unreadable(path, error, advice) from error
    if stat.S_ISLNK(status.st_mode) or not stat.S_ISREG(status.st_mode):
        kind = 'a symbolic link' if stat.S_ISLNK(status.st_mode) else 'not a regular file'
        raise ResultsError(f'{path} is {kind}, which no run writes; {advice}')
    limit = MAX_BYTES.get(path.name, MAX_BYTES.get(path.suffix))
    if limit is not None and status.st_size > limit:
        raise ResultsError(
            f'{path} holds {status.st_size} bytes, more than any run writes ({limit}); {advice}'
        )


def _read_optional(path, load, errors, advice):
    """``load(path)``; None if ``path`` does not exist; ``errors`` become a ResultsError
    naming the file, with ``advice``. The file is checked first (:func:`_checked_file`)."""
    if not os.path.lexists(path):
        return None
    _checked_file(path, advice)
    try:
        return load(path)
    except RecursionError as error:
        raise ResultsError(f"{path} is nested too deeply to be a run's file; {advice}") from error
    except errors as error:
        raise _unreadable(path, error, advice) from error


#: What a checkpoint holds; anything else in its place is refused.
CHECKPOINT_ENTRIES = (
    'model',
    'optimiser',
    'history',
    'generator',
    'torch_rng',
    'numpy_rng',
    'python_rng',
    'arguments',
)


def _check_archive(path):
    """Refuse a zip archive (a torch state or ``.npz`` weights) whose members inflate
    beyond the file's own size: torch.save and np.savez store them uncompressed, so such
    a file is not one a run wrote, and reading it could exhaust memory."""
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile:
        raise ValueError(
            'not a zip archive, as torch.save and np.savez write (left unread: it could be '
            'a pickle that runs code)'
        ) from None
    if inflated > 2 * path.stat().st_size + 2**16:
        raise ValueError(f'its contents inflate to {inflated} bytes from a smaller file')


def checkpoint_bytes(model):
    """The most bytes a checkpoint of ``model`` may take: its parameters and buffers
    three times over (the weights and Adam's two moments), and room for the history, the
    generators' states and the arguments."""
    tensors = list(model.parameters()) + list(model.buffers())
    return 3 * sum(tensor.numel() * tensor.element_size() for tensor in tensors) + 2**24


def read_checkpoint(folder, device='cpu', max_bytes=None):
    """The latest state a run kept, its tensors on ``device``, and the file it came from:
    ``(checkpoint, path)``, or None if the run kept none.

    Of ``checkpoint.pt`` and ``final_state.pt``, the one with more epochs is taken. Files
    are read with ``weights_only=True``: a checkpoint cannot run code when it is loaded.
    ``max_bytes`` (e.g. :func:`checkpoint_bytes` of the run's model): a larger file is
    refused unread, whatever it holds.

    Raises:
        ResultsError: a file is corrupt, truncated, or not a checkpoint.
    """

    def load(path):
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(
                f"it holds {size} bytes, more than a checkpoint of this run's model takes "
                f'({max_bytes})'
            )
        _check_archive(path)
        # Any exception: torch.load fails in many ways on bad files (and refuses, with an
        # UnpicklingError, anything but tensors and plain containers).
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(checkpoint, dict):
            raise ValueError(f"a {type(checkpoint).__name__}, not a checkpoint's dict")
        missing = [name for name in CHECKPOINT_ENTRIES if name not in checkpoint]
        if missing:
            raise ValueError(f'it lacks {", ".join(missing)}')
        epochs = (
            checkpoint['history'].get('epochs') if isinstance(checkpoint['history'], dict) else None
        )
        if not epochs or not all(isinstance(epoch, int) for epoch in epochs):
            raise ValueError('its history records no epochs')
        history = checkpoint['history']
        for name in SERIES:
            if name == 'nparams':
                value = history.get(name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f'its history has nparams {value!r}')
            elif name not in OPTIONAL_SERIES or name in history:
                series = history.get(name)
                if not isinstance(series, list) or len(series) != len(epochs):
                    raise ValueError(f'its history has no {name} for each of its epochs')
        if not isinstance(checkpoint['arguments'], dict):
            raise ValueError('its arguments are not a dict of flags')
        return checkpoint

    found = []
    for name in (CHECKPOINT, FINAL_STATE):
        path = pathlib.Path(folder) / name
        checkpoint = _read_optional(
            path,
            load,
            Exception,
            'delete it, or rerun with --load_model 0 to start the run afresh',
        )
        if checkpoint is not None:
            found.append((checkpoint['history']['epochs'][-1], checkpoint, path))
    if not found:
        return None
    _, checkpoint, path = max(found, key=lambda item: item[0])
    return checkpoint, path


def write_weights(folder, state_dict):
    """Write a model's ``state_dict`` as ``weights.npz`` (numpy arrays, CPU)."""
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in state_dict.items()}
    save_npz(pathlib.Path(folder) / WEIGHTS, **arrays)


def read_weights(folder):
    """A run's final weights as a ``state_dict`` of CPU tensors; None if it wrote none.

    Raises:
        ResultsError: the file is corrupt or truncated.
    """

    def load(path):
        _check_archive(path)
        with np.load(path) as arrays:
            weights = {name: torch.from_numpy(arrays[name].copy()) for name in arrays.files}
        bad = [name for name, tensor in weights.items() if not torch.isfinite(tensor).all()]
        if bad:
            raise ValueError(f'{", ".join(bad)} hold NaN or infinite values')
        return weights

    return _read_optional(
        pathlib.Path(folder) / WEIGHTS,
        load,
        (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile),
        'delete the run folder and run it again',
    )


def read_summary(folder):
    """A run's ``summary.json`` as a dict; None if the run has none.

    Raises:
        ResultsError: the file is not valid JSON.
    """

    def load(path):
        summary = json.loads(path.read_text())
        if not isinstance(summary, dict):
            raise ValueError(f'a JSON {type(summary).__name__}, not an object')
        return summary

    return _read_optional(
        pathlib.Path(folder) / SUMMARY,
        load,
        (OSError, ValueError),
        'delete the run folder and run it again',
    )


def read_run(folder):
    """Series (numpy arrays) and summary (dict) of one run; missing files are left out.

    The series are cut to the epochs the summary reports done: a run killed between
    writing its series and its summary never shows more epochs than it recorded.

    Raises:
        ResultsError: a file of the run is corrupt or truncated.
    """
    folder = pathlib.Path(folder)
    run = {}
    for name in SERIES:
        path = folder / f'{name}.npy'
        run_series = _read_optional(
            path,
            _load_series,
            (OSError, ValueError, EOFError),
            'delete the run folder and run it again',
        )
        if run_series is not None:
            run[name] = run_series
    summary = read_summary(folder)
    for name, series in run.items():
        _check_series(folder / f'{name}.npy', name, series)
    if summary is not None:
        run['summary'] = summary
        done = summary.get('epochs_done')
        if done is not None and (isinstance(done, bool) or not isinstance(done, int) or done < 0):
            raise ResultsError(
                f'{folder / SUMMARY} records epochs_done {done!r}, not a non-negative whole '
                'number; delete the run folder and run it again'
            )
        if done is not None:
            for name in SERIES:
                if name != 'nparams' and name in run:
                    if len(run[name]) < done + 1:
                        raise ResultsError(
                            f'{folder / (name + ".npy")} holds {len(run[name])} epochs but '
                            f'{folder / SUMMARY} records {done + 1} (0 to {done}); delete the '
                            'run folder and run it again'
                        )
                    run[name] = run[name][: done + 1]
    return run


def _load_series(path):
    """A ``.npy`` series whose header agrees with the file's size (a header may claim any
    shape: it is checked before anything is allocated); never a pickled object."""
    with open(path, 'rb') as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        header_end = stream.tell()
    if dtype.hasobject:
        raise ValueError('it holds Python objects, not numbers')
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if header_end + expected > path.stat().st_size:
        raise ValueError(f'its header claims {expected} bytes of data in a smaller file')
    return np.load(path, allow_pickle=False)


def _check_series(path, name, series):
    """Refuse a series no run writes: not numbers, not one value per epoch (one in all
    for ``nparams``), not finite, negative times or NFE, or epochs out of order."""
    problem = None
    if not np.issubdtype(series.dtype, np.number) or np.issubdtype(
        series.dtype, np.complexfloating
    ):
        problem = f'holds {series.dtype} values, not numbers'
    elif series.ndim != (0 if name == 'nparams' else 1):
        problem = f'has shape {series.shape}'
    elif not np.all(np.isfinite(series)):
        problem = 'holds NaN or infinite values'
    elif name != 'epoch_loss_history' and name != 'epoch_val_metric_history' and np.any(series < 0):
        problem = 'holds negative values'
    elif name == 'epochs' and not np.array_equal(series, np.arange(len(series))):
        problem = 'does not count the epochs 0, 1, 2, ...'
    if problem is not None:
        raise ResultsError(f'{path} {problem}; delete the run folder and run it again')


def finished_run(folder):
    """The run in ``folder`` if its summary says it finished, else None (unfinished runs
    are not an error).

    Raises:
        ResultsError: the run says it finished but a file is corrupt, a series is missing
            or malformed, or a series does not hold every epoch the summary records.
    """
    folder = pathlib.Path(folder)
    run = read_run(folder)
    summary = run.get('summary', {})
    # Only the runner's own True counts: "no", 0 or a missing entry is not finished.
    if summary.get('complete') is not True:
        return None
    missing = [f'{name}.npy' for name in SERIES if name not in OPTIONAL_SERIES and name not in run]
    done = summary.get('epochs_done')
    if missing:
        problem = f'lacks {", ".join(missing)}'
    elif done is None:
        problem = f'has no epochs_done in {SUMMARY}'
    elif len(run['epochs']) != done + 1:
        problem = f'records {done + 1} epochs but epochs.npy holds {len(run["epochs"])}'
    else:
        return run
    raise ResultsError(
        f'{folder} says it finished but {problem}; delete the run folder and run it again'
    )


def is_complete(folder, nepochs=None):
    """Whether a run finished (to ``nepochs`` epochs, when given): its summary says so and
    every series holds every epoch.

    Raises:
        ResultsError: as :func:`finished_run`.
    """
    run = finished_run(folder)
    return run is not None and (nepochs is None or run['summary']['epochs_done'] >= nepochs)


#: Flags that do not change a run's results: resuming may change them.
NOT_IDENTITY = ('nepochs', 'load_model', 'save_model', 'quiet', 'results_dir', 'data_dir')


def identity(arguments):
    """The settings that make a run what it is: every flag but :data:`NOT_IDENTITY`.

    Args:
        arguments: dict of flag values (as in ``summary.json``) or an argparse Namespace.
    """
    if not isinstance(arguments, dict):
        arguments = vars(arguments)
    # Through JSON, so that values compare as they are stored (devices as strings).
    stored = json.loads(
        json.dumps(
            {key: value for key, value in arguments.items() if key not in NOT_IDENTITY}, default=str
        )
    )
    return stored


def differences(recorded, wanted):
    """``{flag: (recorded, wanted)}`` for the identity flags that differ."""
    recorded, wanted = identity(recorded), identity(wanted)
    return {
        key: (recorded.get(key), wanted.get(key))
        for key in sorted(set(recorded) | set(wanted))
        if recorded.get(key) != wanted.get(key)
    }


def toy_gradient_dir(results_dir, method):
    """Folder of one method's toy-gradient errors: ``<results_dir>/toy_gradient/<method>/``."""
    return pathlib.Path(results_dir) / 'toy_gradient' / method


#: The toy gradient's quantities, each with a ``<quantity>_relative_error.npy``.
TOY_QUANTITIES = ('loss', 'z0', 'a', 'T')
#: The toy gradient's methods: the training options it shares with the ODE experiments,
#: then TorchDiffEqPack's two (MALI and ACA).
TOY_METHODS = ('adjoint_gq', 'adjoint_ode', 'direct', 'mali', 'aca')


def write_toy_gradient(results_dir, method, end_times, errors, summary):
    """Write one method's toy-gradient errors; returns its folder.

    Args:
        end_times: ``(K,)`` integration times T.
        errors: ``(K, 4)`` relative errors, columns as :data:`TOY_QUANTITIES`.
        summary: dict, written as ``summary.json`` (with ``complete: True`` added).
    """
    folder = toy_gradient_dir(results_dir, method)
    save_npy(folder / 'end_times.npy', np.asarray(end_times))
    for column, quantity in enumerate(TOY_QUANTITIES):
        save_npy(folder / f'{quantity}_relative_error.npy', np.asarray(errors)[:, column])
    save_json(folder / SUMMARY, {**summary, 'method': method, 'complete': True})
    return folder


def read_toy_gradient(results_dir, method):
    """``(end_times, {quantity: errors})`` of one method, or None if it has not run.

    Raises:
        ResultsError: a file is corrupt, missing beside the others, not a series of finite
            numbers, or of another length than the end times.
    """
    folder = toy_gradient_dir(results_dir, method)
    if not (folder / 'end_times.npy').exists():
        return None
    advice = 'delete the folder and run experiments.toy_gradient again'

    def load(name):
        path = folder / f'{name}.npy'
        try:
            series = np.load(path)
        except (OSError, ValueError, EOFError) as error:
            raise _unreadable(path, error, advice) from error
        if (
            series.ndim != 1
            or not np.issubdtype(series.dtype, np.floating)
            or not np.all(np.isfinite(series))
        ):
            raise ResultsError(f'{path} is not a series of finite numbers; {advice}')
        return series

    ends = load('end_times')
    errors = {quantity: load(f'{quantity}_relative_error') for quantity in TOY_QUANTITIES}
    for quantity, series in errors.items():
        if len(series) != len(ends):
            raise ResultsError(
                f'{folder / (quantity + "_relative_error.npy")} holds {len(series)} values for '
                f'{len(ends)} end times; {advice}'
            )
    return ends, errors


def complete_runs(results_dir, experiment, ablation):
    """Finished runs of one experiment and ablation, grouped by width and option.

    Repeats of one width and option must agree on every setting but the repeat number
    and on their epochs; where they do not, the most common settings are kept and every
    other run is named on stderr and left out, as is every unreadable run.

    Returns:
        dict ``(width: int, adjoint_option: str) -> list of run dicts`` (see :func:`read_run`),
        repeats in ``experiment_no`` order; unfinished runs are left out.
    """
    base = pathlib.Path(results_dir) / experiment / str(ablation)
    groups = {}
    for folder in sorted(base.glob('*/*/*')):
        width, option, number = folder.parts[-3:]
        # Only the names a run writes: plain decimal numbers without leading zeros
        # (``007`` or Unicode digits would count one run twice), real folders (a symbolic
        # link may point at another run).
        if not (_run_number(width) and _run_number(number)):
            continue
        if any(part.is_symlink() for part in (folder, folder.parent, folder.parent.parent)):
            print(f'left out: {folder} is reached through a symbolic link', file=sys.stderr)
            continue
        try:
            run = finished_run(folder)
            if run is None:
                continue
            _check_naming(folder, run['summary'], int(width), option, int(number))
        except ResultsError as error:
            print(f'left out: {error}', file=sys.stderr)
            continue
        groups.setdefault((int(width), option), []).append((int(number), folder, run))
    return {key: _consistent(found) for key, found in groups.items()}


def _run_number(text):
    """Whether a folder name is a number as a run writes it (``str(int)``)."""
    return text.isascii() and text.isdigit() and str(int(text)) == text


def _check_naming(folder, summary, width, option, number):
    """Refuse a run whose recorded settings are not those its folder is named by."""
    arguments = summary.get('arguments')
    if not isinstance(arguments, dict):
        raise ResultsError(
            f'{folder / SUMMARY} records no arguments; delete the run folder and run it again'
        )
    for key, value in (('width', width), ('adjoint_option', option), ('experiment_no', number)):
        if key in arguments and arguments[key] != value:
            raise ResultsError(
                f'{folder / SUMMARY} records {key} {arguments[key]!r} but the folder is named '
                f'for {value!r}; delete the run folder and run it again'
            )


def _settings(run):
    settings = identity(run['summary'].get('arguments', {}))
    settings.pop('experiment_no', None)
    settings['epochs_done'] = run['summary'].get('epochs_done')
    return json.dumps(settings, sort_keys=True)


def _consistent(found):
    keys = [_settings(run) for _, _, run in found]
    kept = max(set(keys), key=keys.count)
    for (_, folder, _run), key in zip(found, keys):
        if key != kept:
            other = json.loads(kept)
            mine = json.loads(key)
            differing = ', '.join(
                f'{name} {mine.get(name)!r} (others {other.get(name)!r})'
                for name in sorted(set(mine) | set(other))
                if mine.get(name) != other.get(name)
            )
            print(
                f'inconsistent: {folder} differs from its other repeats in {differing}; left out',
                file=sys.stderr,
            )
    return [
        run
        for (_, _, run), key in sorted(zip(found, keys), key=lambda item: item[0][0])
        if key == kept
    ]
