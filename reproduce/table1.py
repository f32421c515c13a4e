"""Table 1 of the paper (properties of the ITL datasets) as LaTeX and JSON: pure functions of the counts."""

ROWS = [
    ("target_categories", r"No.\ of target categories"),
    ("target_train_images", r"No.\ of target training images"),
    ("target_test_images", r"No.\ of target testing images"),
    ("source_categories", r"No.\ of source categories"),
    ("source_images", r"No.\ of source images"),
]


def table1_columns(profile, data_root=None, download=False):
    """``{dataset name: {row key: count}}`` for each ITL dataset of the profile, at Table 2's level (FGVC needs only annotations).

    The labelled target images (training + validation) and source images are
    those of the first seed's draw; every seed draws the same counts.
    """
    from jtln.data import load_itl

    data = profile.data
    columns = {}
    for group in data.groups:
        itl = load_itl(data.dataset, group, root=profile.data_root(data_root), download=download or data.download)
        d = profile.draw(itl, data.table2_level, profile.run.seeds[0])
        columns[group] = itl.table1_column(d)
    return columns


def table1_latex(columns, caption):
    """A booktabs table with the paper's rows and one column per ITL dataset."""
    from reproduce.tables import latex_table

    names = list(columns)
    rows = [label + " & " + " & ".join(str(columns[n][key]) for n in names) + r" \\" for key, label in ROWS]
    return latex_table(caption, "l" + "r" * len(names), "Dataset properties & " + " & ".join(names) + r" \\", rows)
