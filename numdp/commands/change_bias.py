"""`numdp change-bias MODEL [-s DIR ... | -f DATAFILE | -b B ...] [-n N] [-m change|set] [-o OUT]`:
a model's per-type energy bias fitted to labelled data, like DeePMD-kit's `dp change-bias`.

- `-m change` (default): the model's energies on the frames are subtracted from their labels and
  the least-squares per-type shift of those errors (numdp.model.bias.fit_type_shift) is added to
  the model's out_bias (DeePMD-kit's "change-by-statistic");
- `-m set`: out_bias becomes the least-squares per-type fit of the labels themselves
  ("set-by-statistic");
- `-b B1 B2 ...`: out_bias becomes these values (eV, one per type of the model's type_map).

`-n N` takes N frames per system, drawn at random without repetition (`--seed`), 0 = all.
The output (default: MODEL with `_updated` before its suffix) is a numdp `.h5` or a DeePMD-kit
`.dp` file; an existing file is kept as #NAME.N# (numdp.io.backup).  Everything but out_bias is
written as read.

MODEL may also be a checkpoint of `numdp train` (as `dp change-bias` takes DeePMD-kit's): the
fit uses the checkpoint's model (numdp.train.freeze), and the output (default: the checkpoint's
name with `_updated`) is that checkpoint with the new out_bias, to continue with
`numdp train --restart`.
"""
from __future__ import annotations

from pathlib import Path

from ..io.model_file import MODEL_HELP
from .options import add_threads_option
from .systems import add_system_options, system_paths


def configure(parser):
    parser.add_argument("model", help=MODEL_HELP)
    source = add_system_options(parser)
    source.add_argument("-b", "--bias-value", type=float, nargs="+",
                        help="out_bias per type of the model's type_map, eV (no data used)")
    parser.add_argument("-n", "--numb-batch", type=int, default=0,
                        help="frames per system, drawn at random (0 = all, the default)")
    parser.add_argument("-m", "--mode", default="change", choices=["change", "set"],
                        help="change: add the fitted shift of the model's errors; set: the fit of the labels")
    parser.add_argument("-o", "--output", help="output model, .h5 or .dp (default: MODEL_updated.h5/.dp); "
                                               "for a training checkpoint a checkpoint (.h5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the frame draw with -n (default 0)")
    add_threads_option(parser)


def _updated_name(path: Path) -> Path:
    """The default output of `path` (a model or a training checkpoint): NAME_updated.SUFFIX."""
    return path.with_name(path.stem + "_updated" + path.suffix)


def _output_path(model: Path, output: str | None) -> Path:
    from ..errors import InputError
    from ..io.model_file import check_model_output

    if output is None:
        if model.suffix.lower() in (".pt", ".pth"):
            raise InputError(f"{model}: numdp does not write PyTorch models: give -o NAME.h5 or NAME.dp")
        out = _updated_name(model)
    else:
        out = Path(output)
    return check_model_output(out)


def fitted_bias(model, paths, numb_batch: int, mode: str, seed: int):
    """(shift or new out_bias (ntypes,) eV, frames used): `mode` "change" fits the per-type
    shift of label − model energy, "set" the labels; systems without energy labels are skipped.
    Atoms of the model's atom_exclude_types are not counted (their energy is zero whatever the
    bias: DeePMD-kit masks them too; their bias comes out 0), nor are virtual atoms (mixed-type
    padding, type -1: the frames are evaluated without them, as `numdp test` does)."""
    import numpy as np

    from ..errors import InputError
    from ..io.npy_system import load_system, real_atoms
    from ..model.bias import fit_type_shift
    from ..model.dp_model import evaluate_real_atoms

    nt = len(model.type_map)
    rng = np.random.default_rng(seed)
    counts, values = [], []
    for path in paths:
        system = load_system(path)
        if system.energy is None:
            print(f"# {path}: no energy labels, skipped")
            continue
        types = system.frame_model_types(model.type_map)
        fparams = system.model_fparam(model) if mode == "change" else None
        aparams = system.model_aparam(model) if mode == "change" else None
        n = system.nframes
        frames = (np.arange(n) if numb_batch <= 0 or numb_batch >= n
                  else np.sort(rng.choice(n, size=numb_batch, replace=False)))
        for f in frames:
            e = float(system.energy[f])
            if mode == "change":
                box = None if system.boxes is None else system.boxes[f]
                e -= evaluate_real_atoms(model, system.coords[f], types[f], box,
                                         fparam=None if fparams is None else fparams[f],
                                         aparam=None if aparams is None else aparams[f]).energy
            counts.append(np.bincount(types[f][real_atoms(types[f])], minlength=nt))
            values.append(e)
    if not counts:
        raise InputError("none of the systems has energy labels (energy.npy): nothing to fit")
    counts = np.array(counts)
    counts[:, model.source_params.atom_excluded] = 0
    return fit_type_shift(counts, np.array(values)), len(values)


def main(args) -> int:
    import numpy as np

    from ..errors import InputError
    from ..io.backup import Backups
    from ..io.model_file import read_model, write_model
    from ..model.dp_model import DPModel, load_model

    if args.numb_batch < 0:
        raise InputError(f"-n {args.numb_batch}: the number of frames per system must be >= 0 (0 = all)")
    if args.seed < 0:
        raise InputError(f"--seed {args.seed}: the seed of the frame draw must be >= 0")
    bad = [v for v in args.bias_value or () if not np.isfinite(v)]
    if bad:
        raise InputError(f"-b {bad[0]}: out_bias values must be finite numbers (eV)")
    model_path = Path(args.model)
    checkpoint = None
    from ..train.checkpoint import is_checkpoint, read_checkpoint

    if is_checkpoint(model_path):
        from ..train.freeze import model_from_checkpoint

        checkpoint = read_checkpoint(model_path)
        params = model_from_checkpoint(model_path)
        out_path = _updated_name(model_path) if args.output is None else Path(args.output)
        if out_path.suffix.lower() in (".dp", ".pb", ".pt", ".pth"):   # the output is a checkpoint (HDF5)
            raise InputError(f"-o {out_path}: {model_path} is a training checkpoint, and so is the output "
                             f"(to continue with numdp train --restart), not a {out_path.suffix} model: "
                             f"name it .h5, or freeze the checkpoint (numdp freeze) and change that model's bias")
    else:
        out_path = _output_path(model_path, args.output)
        params = read_model(model_path)
    names = list(params.type_map)
    old = params.out_bias.copy()
    if args.bias_value is not None:
        if len(args.bias_value) != len(names):
            raise InputError(f"-b: {len(args.bias_value)} values for the {len(names)} types of the "
                             f"model's type_map {names}")
        new = np.array(args.bias_value, dtype=np.float64)
        how = "given values"
    else:
        paths = system_paths(args)
        # (the checkpoint's model as read above: its out_bias changes only after the fit)
        model = (load_model(model_path, nthreads=args.threads) if checkpoint is None
                 else DPModel(params, nthreads=args.threads))
        fit, nframes = fitted_bias(model, paths, args.numb_batch, args.mode, args.seed)
        new = old + fit if args.mode == "change" else fit
        how = (f"{'shift of the model errors' if args.mode == 'change' else 'fit of the labels'} over "
               f"{nframes} frames of {len(paths)} system(s)")
    params.out_bias = new
    print(f"# out_bias ({how}), eV: " + ", ".join(f"{names[t]} {old[t]:.10g} -> {new[t]:.10g}"
                                                   for t in range(len(names))))
    with Backups.move([out_path], "the existing") as backups:
        if checkpoint is None:
            write_model(params, out_path)
        else:
            from ..train.checkpoint import write_checkpoint

            checkpoint.out_bias = np.array(new, dtype=np.float64)
            write_checkpoint(checkpoint, out_path)
    if backups.moved:
        print(backups.line())
    print(f"wrote {out_path}")
    return 0
