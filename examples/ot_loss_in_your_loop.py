"""The OT loss in your own training loop: a two-headed network trained on target images with cross-entropy plus
Eq. 3's OT term between its heads (the JTLN objective of Eq. 4, without the source images' cross-entropy for brevity).

Runs in seconds on generated data: ``python examples/ot_loss_in_your_loop.py``; the library alone is enough
(``pip install .`` from the repository's root).
"""

import torch
from torch import nn

from jtln import OTLoss, mmd_cost_matrix

torch.manual_seed(0)
L_s, L_t, D = 6, 4, 16
# generated "penultimate features" of source and target classes; target class j resembles source classes 2j and 2j+1 (j < 3)
centres_s = torch.randn(L_s, D) * 3
centres_t = torch.stack([centres_s[0], centres_s[2], centres_s[4], torch.randn(D) * 3]) + 0.5
y_s, y_t = torch.arange(L_s).repeat_interleave(40), torch.arange(L_t).repeat_interleave(40)
x_s, x_t = centres_s[y_s] + torch.randn(len(y_s), D), centres_t[y_t] + torch.randn(len(y_t), D)

C = mmd_cost_matrix(x_s, y_s, x_t, y_t)      # Eq. 14 between class features, min-max scaled to [0, 1]
ot = OTLoss(C, lam=10.0, logits=True)        # lam = 1/reg in POT's terms; about 10 for a cost in [0, 1]
lambda_ot = 1.0                              # the OT term's weight (Eq. 4); searched over 0.1-10 in the sweep

features = nn.Sequential(nn.Linear(D, 32), nn.ReLU())
head_s, head_t = nn.Linear(32, L_s), nn.Linear(32, L_t)
params = [*features.parameters(), *head_s.parameters(), *head_t.parameters()]
optimizer = torch.optim.SGD(params, lr=0.05, momentum=0.9)
for _ in range(60):
    batch = torch.randint(len(y_t), (32,))
    f = features(x_t[batch])
    logits_s, logits_t = head_s(f), head_t(f)
    loss = nn.functional.cross_entropy(logits_t, y_t[batch]) + lambda_ot * ot(logits_s, logits_t)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

with torch.no_grad():
    accuracy = (head_t(features(x_t)).argmax(1) == y_t).float().mean().item()
print(f"final loss {loss.item():.3f}, target training accuracy {accuracy:.3f}")
