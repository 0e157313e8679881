"""PyTorch's stacked, bidirectional, packed-sequence networks as the
reference of bptt's layers, directions and ragged input (test_layers.py,
test_ragged.py): torch.nn.RNN/LSTM/GRU(num_layers, bidirectional,
batch_first=True) over pack_padded_sequence(enforce_sorted=False) plus
nn.Linear, the loss over real elements only."""

import numpy as np


def torch_loss_grad(net, X_list, y, *, loss="mse", output="sequence"):
    """Loss, gradients (bptt's names) and final state (bptt's form) of
    PyTorch's equivalent of ``net`` on the sequences ``X_list`` (a list of
    (T_i, I) arrays); ``y`` a list of (T_i, O) arrays (or (T_i,) labels)
    for "sequence", else (n, O) (or (n,) labels)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    H, D, L = net.hidden_size, 2 if net.bidirectional else 1, net.num_layers
    kinds = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
    extra = {"nonlinearity": net.nonlinearity} if net.cell == "rnn" else {}
    rnn = kinds[net.cell](net.input_size, H, num_layers=L, bidirectional=net.bidirectional,
                          batch_first=True, **extra).to(dtype)
    linear = torch.nn.Linear(D * H, net.output_size).to(dtype)
    sd = net.to_torch_state_dict(rnn_prefix="rnn.", output_prefix="fc.")
    rnn.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in sd.items()
                         if k.startswith("rnn.")})
    linear.load_state_dict({"weight": torch.from_numpy(sd["fc.weight"]),
                            "bias": torch.from_numpy(sd["fc.bias"])})
    lengths = [len(x) for x in X_list]
    n, T = len(X_list), max(lengths)
    pad = np.zeros((n, T, net.input_size))
    for i, x in enumerate(X_list):
        pad[i, :len(x)] = np.asarray(x).reshape(len(x), -1)
    packed = pack_padded_sequence(torch.tensor(pad, dtype=dtype), torch.tensor(lengths),
                                  batch_first=True, enforce_sorted=False)
    out, state = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    h_n = state[0] if net.cell == "lstm" else state
    mask = torch.tensor(np.arange(T)[None, :] < np.array(lengths)[:, None])
    if output == "sequence":
        z = linear(out[mask])  # real rows only
        if loss == "cross_entropy":
            target = torch.tensor(np.concatenate([np.asarray(t) for t in y]).astype(np.int64))
        else:
            target = torch.tensor(np.concatenate(
                [np.asarray(t).reshape(len(t), -1) for t in y]), dtype=dtype)
    else:
        if output == "last":
            top = h_n.view(L, D, n, H)[-1]
            feats = torch.cat([top[0], top[1]], dim=1) if D == 2 else top[0]
        else:
            feats = (out * mask[..., None]).sum(1) / torch.tensor(lengths, dtype=dtype)[:, None]
        z = linear(feats)
        if loss == "cross_entropy":
            target = torch.tensor(np.asarray(y).astype(np.int64))
        else:
            target = torch.tensor(np.asarray(y).reshape(n, -1), dtype=dtype)
    if loss == "mse":
        value = torch.mean((z - target) ** 2)
    elif loss == "cross_entropy":
        value = torch.nn.functional.cross_entropy(z, target)
    else:
        value = torch.nn.functional.binary_cross_entropy_with_logits(z, target)
    value.backward()
    g = {}
    for name, param in rnn.named_parameters():
        grad = param.grad.detach().numpy().copy()
        if name.startswith("bias_hh"):
            # bptt folds bias_hh into b_h (but the GRU's n block, b_hn)
            if net.cell == "gru":
                grad[:2 * H] = 0
            else:
                grad[...] = 0
        g["rnn." + name] = grad
    g["fc.weight"] = linear.weight.grad.detach().numpy()
    g["fc.bias"] = linear.bias.grad.detach().numpy()
    grads = type(net).from_torch_state_dict(g, cell=net.cell, rnn_prefix="rnn.",
                                            output_prefix="fc.", dtype=net.dtype).params
    states = [s.detach().numpy() for s in (state if net.cell == "lstm" else (state,))]
    if L * D == 1:
        states = [s[0] for s in states]
    return value.item(), dict(grads), tuple(states) if net.cell == "lstm" else states[0]


def assert_close(actual, expected, dtype, what=""):
    rtol = 1e-7 if np.dtype(dtype) == np.float64 else 2e-3
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(np.abs(expected).max(initial=0.0), 1e-3)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)
