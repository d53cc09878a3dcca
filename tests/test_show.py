"""`numdp show` (DeePMD-kit's `dp show`): a model's type map, networks and size."""
import numpy as np

from numdp.cli import main as cli_main
from numdp.io.model_file import write_model
from numdp.model.compress import compress
from randmodel import random_params


def test_show_prints_what_the_model_holds(tmp_path, capsys):
    p = random_params(ntypes=2, sel=[6, 10], neuron=(4, 8), axis_neuron=2, fitting=(12, 12), seed=3)
    p.type_map = ["Cu", "O"]
    p.info = {"software": "numdp", "numb_steps": 40}
    write_model(p, tmp_path / "m.h5")
    assert cli_main(["show", str(tmp_path / "m.h5")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "This is a singletask model"   # dp show's first line
    assert "The type_map is ['Cu', 'O']" in out
    assert "'sel': [6, 10], 'neuron': [4, 8], 'axis_neuron': 2" in out
    assert "'neuron': [12, 12]" in out
    # the counts from the arrays: 4 nets 1->4->8, 2 fitting nets 2*8=16 -> 12 -> 12 -> 1
    emb = 4 * ((1 * 4 + 4) + (4 * 8 + 8))
    fit_nets = 2 * ((16 * 12 + 12) + (12 * 12 + 12) + (12 * 1 + 1))
    idt = sum(0 if lay.idt is None else lay.idt.size for net in p.descriptor.embeddings + p.fitting.nets
              for lay in net.layers)
    assert f"Parameters in total: {emb + fit_nets + idt:,}" in out
    assert "Metadata: software numdp, numb_steps 40" in out and "tabulated" not in out
    bias = p.fitting.bias_atom_e + p.out_bias
    assert f"Cu {bias[0]:.10g}, O {bias[1]:.10g}" in out
    p.min_nbor_dist = 0.8
    write_model(compress(p, dx=0.05, order=5)[0], tmp_path / "c.h5")
    assert cli_main(["show", str(tmp_path / "c.h5"), "descriptor"]) == 0
    out = capsys.readouterr().out
    assert "tabulated (compressed): order 5, step 0.05" in out and "type_map" not in out
    assert cli_main(["show", str(tmp_path / "m.h5"), "sizes"]) == 2
    err = capsys.readouterr().err
    assert "'sizes': not an attribute numdp show knows" in err and len(err.strip().splitlines()) == 1
    assert np.isfinite(bias).all()
