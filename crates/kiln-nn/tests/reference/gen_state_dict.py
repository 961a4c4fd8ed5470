"""Write a PyTorch LSTM/GRU state dict as safetensors (torch's own names and layouts) plus its
input and output, so kiln's test can load the file directly and compare.

Run from this folder:  python gen_state_dict.py
"""
import json
import torch
import torch.nn as nn
from safetensors.torch import save_file

torch.manual_seed(1)
out = {}
for kind, cls in [("lstm", nn.LSTM), ("gru", nn.GRU)]:
    m = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True).eval()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f"{kind}_state_dict.safetensors")
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        y, _ = m(x)
    out[kind] = {
        "input": {"shape": list(x.shape), "data": x.reshape(-1).tolist()},
        "output": {"shape": list(y.shape), "data": y.reshape(-1).tolist()},
    }
with open("state_dict_io.json", "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("wrote lstm_state_dict.safetensors gru_state_dict.safetensors state_dict_io.json")
