"""The cost matrix of Sec. 3.4 from your own class features, by MK-MMD (Eq. 14) and by OT (Eq. 16), drawn as heatmaps.

Replace the generated features by your network's penultimate features of source and target images (any
[N, D] tensors with integer class labels).  ``python examples/cost_matrix_heatmap.py [out.png]``, in seconds.
Needs matplotlib besides the library: ``pip install ".[experiment]"`` from the repository's root.
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from jtln import mmd_cost_matrix, ot_cost_matrix  # noqa: E402

torch.manual_seed(0)
source, target = ["wolf", "fox", "tabby", "lion"], ["husky", "siamese"]
centres = {"wolf": 0.0, "fox": 1.0, "tabby": 6.0, "lion": 8.0, "husky": 0.3, "siamese": 6.2}  # dogs near dogs, cats near cats
y_s, y_t = torch.arange(4).repeat_interleave(50), torch.arange(2).repeat_interleave(50)
x_s = torch.tensor([centres[source[c]] for c in y_s])[:, None] + torch.randn(200, 8)
x_t = torch.tensor([centres[target[c]] for c in y_t])[:, None] + torch.randn(100, 8)

matrices = {"MK-MMD (Eq. 14)": mmd_cost_matrix(x_s, y_s, x_t, y_t), "OT (Eq. 16)": ot_cost_matrix(x_s, y_s, x_t, y_t)}
fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
for ax, (title, C) in zip(axes, matrices.items()):
    image = ax.imshow(C.numpy(), cmap="viridis")
    ax.set(title=title, xticks=range(2), xticklabels=target, yticks=range(4), yticklabels=source, xlabel="target class")
    fig.colorbar(image, ax=ax)
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else "cost_matrix.png"
fig.savefig(out, dpi=100)
cheapest = {source[i]: target[j] for i, j in enumerate(matrices["MK-MMD (Eq. 14)"].argmin(1).tolist())}
print(f"cheapest target class of each source class (MK-MMD): {cheapest}; heatmaps in {out}")
