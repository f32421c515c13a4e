"""The report notebook: built with nbformat, executed and rendered to HTML with nbconvert."""

import json
from pathlib import Path

FORMAT_CELL = """import math
import numpy as np
import pandas as pd
def fmt(value):
    # a number as the LaTeX tables write it: four decimals, never NaN or exponent notation; an interval as [low, high]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '--'
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float, type(None))) for v in value):
        return f'[{fmt(value[0])}, {fmt(value[1])}]'
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-3:  # three significant digits, written out
            return np.format_float_positional(value, precision=3, unique=True, fractional=False, trim='-')
        return f'{value:.4f}'
    return value
def show(frame):
    display(HTML(frame.map(fmt).to_html(na_rep='--')))
stats = json.loads((out / 'stats.json').read_text())"""
TABLES_CELL = """display(Markdown('**Table 1**: the ITL datasets'))
show(pd.DataFrame(json.loads((out / 'table1.json').read_text())))
rows = stats['table2']
datasets = list(rows[0]['cells']) if rows else []
def cell(c):
    if not c['n']:
        return '--'
    return f"{c['mean']:.4f}" if c['n'] == 1 else f"{c['mean']:.4f} ± {c['std']:.4f}"
columns, bold = {}, {}
for d in datasets:
    columns[d] = [cell(r['cells'][d]) for r in rows]
    bold[d] = [r['cells'][d]['bold'] for r in rows]
    if any(r['cells'][d]['paper'] is not None for r in rows):
        columns[f'{d} (paper)'] = ['--' if r['cells'][d]['paper'] is None else f"{r['cells'][d]['paper']:.4f}" for r in rows]
        bold[f'{d} (paper)'] = [False] * len(rows)
table2 = pd.DataFrame(columns, index=[r['name'] for r in rows])
display(Markdown('**Table 2**: target test accuracy, mean ± std over seeds; in bold among the paper\\'s methods, the best and '
                 'every method not significantly worse (none if no method stands out); below the rules, methods beyond the paper, '
                 'then the linear probe (outside the paper)'))
styled = table2.style.set_uuid('table2').apply(lambda column: ['font-weight: bold' if b else '' for b in bold[column.name]])
display(HTML(styled.to_html()))  # the HTML alone: a Styler's text form holds its memory address
display(Markdown('**Selected hyper-parameters**, one row per seed (each seed searches for itself: the lowest validation '
                 'cross-entropy on its validation part, its accuracy beside; it refits on every labelled image for the selected '
                 'epoch count)'))
show(pd.DataFrame([{**{k: s[k] for k in ('dataset', 'method', 'level', 'seed', 'trial', 'val_loss', 'val_accuracy',
                                         'refit_epochs')},
                    **s['hparams']} for s in stats['selection']]))"""
CLAIMS_CELL = """claims = pd.DataFrame(stats['claims'])
columns = ['claim', 'dataset', 'paper_column', 'paper_diff', 'paper_error_reduction', 'margin', 'mean_diff', 'ci95', 'p_t_holm',
           'p_margin_holm', 'power', 'seeds_needed', 'verdict', 'verdict_log_odds']
display(Markdown('**The paper\\'s claims**: both tests of every claim, on every dataset, one Holm family'))
show(claims[[c for c in columns if c in claims]])
if stats.get('beyond'):
    display(Markdown('**Beyond the paper**: each new method against JTLN and joint fine-tuning (Holm within each dataset)'))
    show(pd.DataFrame(stats['beyond'])[['dataset', 'a', 'b', 'mean_diff', 'ci95', 'p_t', 'p_holm', 'verdict']])
display(Markdown('**Every pair of the paper\\'s methods** (exploratory; Holm within each dataset)'))
show(pd.DataFrame(stats['comparisons']).drop(columns=['mcnemar', 'mcnemar_pooled', 'seeds', 'accuracies_a', 'accuracies_b', 'differences']))
if (out / 'relatedness.json').is_file():  # datasets whose source classes' true parents are known
    related = json.loads((out / 'relatedness.json').read_text())
    display(Markdown('**Recovery of the true parents** (as `recovery.tex`: cheapest class = parent pooled over seeds; '
                     'plan mass on parents, mean and 95% CI over seeds; chance = 1 / target classes)'))
    show(pd.DataFrame([{'setting': d, 'cost': k, 'cheapest = parent': f"{c['cheapest']['hits']}/{c['cheapest']['n']}",
                        'plan mass': c['plan_mass']['mean'], 'CI': c['plan_mass']['ci95'], 'chance': part['chance']}
                       for d, part in related['recovery'].items() for k, c in part['costs'].items()]))
    display(Markdown('**Gain over target-only fine-tuning** (accuracy, mean and 95% CI over seeds, as `gain.tex`)'))
    show(pd.DataFrame([{'method': m, 'setting': d, 'gain': g['mean'], 'CI': g['ci95']}
                       for m, cells in related['gain'].items() for d, g in cells.items()]))"""


def build_notebook(out, profile_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    out = Path(out)
    profile_text = Path(profile_path).read_text()
    cells = [
        new_markdown_cell("# jtln: reproduction report\n\nGenerated by `python -m reproduce`; every number below is read "
                          "from the run records and the files beside this report."),
        # the notebook runs in its own folder (see execute_and_render): no machine's paths in it
        new_code_cell("from pathlib import Path\nimport json\nfrom IPython.display import HTML, Image, Markdown, display\n"
                      "out = Path('.')"),
        new_code_cell(FORMAT_CELL),
        new_markdown_cell("## Table 1, Table 2 and the selected hyper-parameters\n\nHTML tables made from `table1.json` and "
                          "`stats.json`, the data the LaTeX tables (`*.tex` beside this report) are made from."),
        new_code_cell(TABLES_CELL),
        new_markdown_cell("## Statistical tests and the paper's claims"),
        new_code_cell(CLAIMS_CELL),
        new_markdown_cell("## Figures"),
        new_code_cell("for png in sorted(out.glob('*.png')):\n    display(Markdown(f'**{png.stem}**'))\n"
                      "    display(Image(str(png), width=960))"),
        new_markdown_cell(f"## Profile and environment\n\nThe profile, `{Path(profile_path).name}`:\n\n```toml\n{profile_text}\n```"),
        new_code_cell("print(json.dumps(stats['environment'], indent=1))"),
    ]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i}"  # nbformat draws random ids: fixed, so the same records give the same files
    notebook = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = out / "report.ipynb"
    nbformat.write(notebook, path)
    return path


def execute_and_render(notebook_path, timeout=600):
    import tempfile

    import nbformat
    from jupyter_client.manager import KernelManager
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor

    notebook = nbformat.read(notebook_path, as_version=4)
    resources = {"metadata": {"path": str(Path(notebook_path).parent)}}
    # the kernel talks over local IPC sockets (in a temporary folder), not unencrypted TCP: no warning in the output
    with tempfile.TemporaryDirectory() as sockets:
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        # the kernel logs only errors: its shutdown race ("Parent appears to have exited") is no warning for the user
        ExecutePreprocessor(timeout=timeout, kernel_name="python3", record_timing=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"]).preprocess(notebook, resources, km=kernel)
    nbformat.write(notebook, notebook_path)
    # for a reader: the outputs alone, no code cells or prompts
    html, _ = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(notebook)
    html_path = Path(notebook_path).with_suffix(".html")
    html_path.write_text(html)
    return html_path


def environment(records):
    versions = [json.dumps(r["versions"], sort_keys=True) for r in records]
    return {"versions": sorted(set(versions)), "devices": sorted({r["device"] for r in records})}
