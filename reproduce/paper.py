"""What the paper published, stated once: its Table 2, its claims, and which dataset plays which of its columns.

Read by the profile (which columns a dataset may play), the statistics (the
claims and their effect sizes) and the tables (the paper's values beside
ours).
"""

#: the paper's Table 2 (multi-class accuracy), as published
PAPER_TABLE2 = {
    "Boeing": {"target_only": 0.4796, "consecutive": 0.5286, "joint": 0.5395, "jtln_mmd": 0.5422, "jtln_ot": 0.5436},
    "Airbus": {"target_only": 0.4965, "consecutive": 0.545, "joint": 0.5497, "jtln_mmd": 0.5982, "jtln_ot": 0.5704},
}
#: the paper's claims: (text, method claimed better, method claimed worse, the paper's columns where it is claimed)
CLAIMS = [
    ("JTLN (fc7MKMMD) beats joint fine-tuning", "jtln_mmd", "joint", ("Boeing", "Airbus")),
    ("JTLN (fc7OT) beats joint fine-tuning", "jtln_ot", "joint", ("Boeing", "Airbus")),
    ("JTLN (fc7MKMMD) beats consecutive fine-tuning", "jtln_mmd", "consecutive", ("Boeing", "Airbus")),
    ("JTLN (fc7OT) beats consecutive fine-tuning", "jtln_ot", "consecutive", ("Boeing", "Airbus")),
    ("joint beats consecutive fine-tuning", "joint", "consecutive", ("Boeing", "Airbus")),
    ("consecutive beats target-only fine-tuning", "consecutive", "target_only", ("Boeing", "Airbus")),
    ("the OT cost beats the MK-MMD cost", "jtln_ot", "jtln_mmd", ("Boeing",)),
    ("the MK-MMD cost beats the OT cost", "jtln_mmd", "jtln_ot", ("Airbus",)),
]


#: the roles the benchmarks' groups play unless a profile says otherwise: the paper's columns in its order
DEFAULT_PLAYS = ("Boeing", "Airbus")


def roles(groups, plays=DEFAULT_PLAYS):
    """``[(dataset, paper column)]``: each group with the paper column it plays (``plays``, one per group; a group
    past the end of ``plays`` plays none, and ``()`` means no group is compared with the paper)."""
    return list(zip(groups, plays))
