"""The quickstart's magics in a real JupyterLab, checked on what the browser really shows.

A notebook for the `gim` kernel is written into a fresh root dir and opened by URL; each test
clicks into one cell and presses Shift+Enter (like a user), waits for the cell to finish, saves
a screenshot and checks the output area's DOM: pictures are displayed with a real size, text is
readable, help is rendered Markdown, and no output is a JSON tree or an error. Then Tab
completion and the toolbar's interrupt button. The tests run in file order and share one
notebook (the kernel keeps its model between cells)."""
import json
import pathlib
import re
import time

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import KERNEL_NAME

PROMPT = "When Mary and John went to the store , John gave a drink to"
CORRUPT = "When Mary and John went to the store , Kate gave a drink to"
NOTEBOOK = "gim-lab-test.ipynb"
# JupyterLab 4.6's JSON renderer (the collapsible tree) and its stderr/error outputs.
JSON_TREE = ".jp-RenderedJSON"
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'
CELL_TIMEOUT = 300  # the machine is small; the circuit magic patches the model many times
IG_STEPS = 2_000_000  # far more than finishes before the interrupt

REAL_PROMPT = "When Mary and John went to the store, John gave a drink to"
REAL_PAIRS = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "data" / "smollm2_ioi.jsonl"

CELLS = {
    "load": "%gim load toy-ioi",
    "tokens": f'%gim tokens "{PROMPT}"',
    "attribute": f'%gim attribute "{PROMPT}" --target " Mary" --contrast " John"',
    "compare": f'%gim compare "{PROMPT}" --target " Mary" --contrast " John" --methods gim,gradient,occlusion',
    "circuit": f'%gim circuit --clean "{PROMPT}" --corrupt "{CORRUPT}" --target " Mary" --foil " John" --faithfulness 0.9',
    "config": "%gim config",
    "models": "%gim models",
    "help": "%gim help",
    "complete": "",  # typed by the completion test
    "ig-steps": f"%gim config ig_steps={IG_STEPS}",
    "long": f'%gim attribute "{PROMPT}" --target " Mary" --method integrated-gradients',
    "models-after": "%gim models",
    # the real pretrained model (make model): what a researcher sees first
    "load-real": "%gim load smollm2-135m",
    "generate-real": '%gim generate "The capital of France is" --max-tokens 8',
    "attribute-real": f'%gim attribute "{REAL_PROMPT}" --target " Mary" --contrast " John"',
    # circuits over a data set (MIB's CPR/CMD): progress line, then the table and the curves
    "circuit-data-real": f'%gim circuit --data "{REAL_PAIRS}" --limit 4 --methods gim,gradient,random --bootstrap 100',
}
INDEX = {name: i for i, name in enumerate(CELLS)}


def notebook_json():
    cells = [{"cell_type": "code", "execution_count": None, "id": f"cell-{i}", "metadata": {},
              "outputs": [], "source": src} for i, src in enumerate(CELLS.values())]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": KERNEL_NAME, "display_name": "GIM (Rust)", "language": "rust"},
            "language_info": {"name": "rust"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


class Notebook:
    def __init__(self, driver, shots):
        self.d, self.shots, self.n_shot = driver, shots, 0
        self.timings = {}

    def wait(self, cond, timeout, what):
        try:
            return WebDriverWait(self.d, timeout, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: cond())
        except Exception as e:
            self.shot(f"timeout-{re.sub(r'[^a-z0-9]+', '-', what.lower())[:40]}")
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from e

    def cells(self):
        return self.d.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook .jp-Cell")

    def cell(self, name):
        return self.cells()[INDEX[name]]

    def scroll_to(self, el):
        self.d.execute_script("arguments[0].scrollIntoView({block: 'start'});", el)
        time.sleep(0.3)

    def shot(self, name):
        self.n_shot += 1
        path = self.shots / f"{self.n_shot:02d}-{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def prompt(self, name):
        return self.cell(name).find_element(By.CSS_SELECTOR, ".jp-InputPrompt").text.strip()

    def status(self):
        """The kernel's execution state from the notebook toolbar's indicator (idle, busy, …)."""
        els = self.d.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator")
        return els[0].get_attribute("data-status") if els else None

    def editor(self, name):
        return self.cell(name).find_element(By.CSS_SELECTOR, ".jp-InputArea-editor .cm-content")

    def source(self, name):
        return self.editor(name).text

    def start(self, name):
        """Click into the cell's editor and press Shift+Enter."""
        cell = self.cell(name)
        self.scroll_to(cell)
        self.editor(name).click()
        ActionChains(self.d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        return time.monotonic()

    def done(self, name):
        return re.fullmatch(r"\[\d+\]:", self.prompt(name)) is not None

    def run(self, name, timeout=CELL_TIMEOUT):
        assert self.source(name) == CELLS[name], f"cell {name} holds {self.source(name)!r}"
        t0 = self.start(name)
        self.wait(lambda: self.done(name), timeout, f"cell `{CELLS[name]}` to finish")
        self.wait(lambda: self.status() in (None, "idle"), 30, "the kernel to go idle")
        self.timings[name] = time.monotonic() - t0
        cell = self.cell(name)
        self.shot_cell(cell, name)
        self.scroll_to(cell)  # back to the top of the cell for the checks
        return cell

    def shot_cell(self, cell, name, pages=4):
        """Screenshots from the cell's top down to its last output (a page per window height)."""
        self.scroll_to(cell)
        self.shot(name)
        for page in range(2, pages + 1):
            below = self.d.execute_script(
                "const c = arguments[0], s = c.closest('.jp-WindowedPanel-outer');"
                "if (!s) return 0;"
                "const over = c.getBoundingClientRect().bottom - s.getBoundingClientRect().bottom;"
                "if (over <= 5) return 0;"
                "s.scrollBy(0, Math.min(over, s.clientHeight - 80)); return over;", cell)
            if not below:
                break
            time.sleep(0.3)
            self.shot(f"{name}-{page}")

    def outputs(self, name):
        return self.cell(name).find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")


def describe(outputs):
    return [(o.get_attribute("class"), o.get_attribute("data-mime-type"), o.text[:120]) for o in outputs]


def assert_clean(nb, name):
    """At least one output; none is a JSON tree or an error/stderr output."""
    outs = nb.outputs(name)
    assert outs, f"`{CELLS[name]}` shows no output"
    trees = [o for o in outs if o.find_elements(By.CSS_SELECTOR, JSON_TREE) or "jp-RenderedJSON" in (o.get_attribute("class") or "")]
    assert not trees, f"`{CELLS[name]}` shows a JSON tree instead of its result: {describe(trees)}"
    errors = [o for o in outs if o.get_attribute("data-mime-type") == "application/vnd.jupyter.stderr"]
    assert not errors, f"`{CELLS[name]}` shows an error: {[e.text for e in errors]}"
    return outs


def pictures(nb, name, min_w=150, min_h=40):
    """Displayed <img>/<svg> in the cell's outputs with a real rendered size (not icons)."""
    found = []
    for el in nb.cell(name).find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output img, .jp-OutputArea-output svg"):
        r = el.rect
        if not (el.is_displayed() and r["width"] >= min_w and r["height"] >= min_h):
            continue
        if el.tag_name == "img" and not nb.d.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0;", el):
            continue
        found.append((el.tag_name, round(r["width"]), round(r["height"])))
    return found


def heatmap_tokens(nb, name):
    """Displayed, coloured token spans of the HTML heatmap (`.gim-tokens`)."""
    spans = nb.cell(name).find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output .gim-tokens span[title]")
    shown = [s for s in spans if s.is_displayed() and s.rect["width"] > 0 and s.rect["height"] > 0]
    coloured = [s for s in shown if s.value_of_css_property("background-color")
                not in ("rgba(255, 255, 255, 1)", "rgba(0, 0, 0, 0)", "transparent")]
    return shown, coloured


def assert_picture_or_heatmap(nb, name, min_tokens=10):
    pics = pictures(nb, name)
    shown, coloured = heatmap_tokens(nb, name)
    print(f"{name}: pictures {pics}; heatmap tokens shown {len(shown)}, coloured {len(coloured)}")
    heatmap_ok = len(shown) >= min_tokens and len(coloured) >= 3
    assert pics or heatmap_ok, (
        f"`{CELLS[name]}` displays neither a picture nor the HTML heatmap "
        f"(pictures {pics}, heatmap tokens {len(shown)}): {describe(nb.outputs(name))}")


def assert_text(nb, name, *needles):
    outs = assert_clean(nb, name)
    shown = [o for o in outs if o.is_displayed() and o.rect["height"] > 0
             and o.get_attribute("data-mime-type") in ("text/html", "text/plain", "text/markdown")]
    text = "\n".join(o.text for o in shown)
    for n in needles:
        assert n in text, f"`{CELLS[name]}`: {n!r} not in the visible text {text[:500]!r} ({describe(outs)})"


@pytest.fixture(scope="module")
def nb(lab, browser, shots):
    (lab["root"] / NOTEBOOK).write_text(json.dumps(notebook_json(), indent=1))
    t0 = time.monotonic()
    browser.get(f"{lab['url']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
    n = Notebook(browser, shots)
    n.wait(lambda: len(n.cells()) == len(CELLS), 120, "the notebook's cells")
    n.wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
           or "GIM (Rust)" in browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel-toolbar").text,
           120, "the GIM kernel in the toolbar")
    dialogs = browser.find_elements(By.CSS_SELECTOR, ".jp-Dialog")
    if dialogs:
        n.shot("dialog")
        pytest.fail(f"JupyterLab asked: {dialogs[0].text}")
    n.wait(lambda: n.status() == "idle", 120, "the gim kernel to be idle")
    # Close the file browser: more room for the outputs in the screenshots.
    for tab in browser.find_elements(By.CSS_SELECTOR, ".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"):
        tab.click()
    time.sleep(0.5)
    print(f"\nnotebook open, kernel idle after {time.monotonic() - t0:.1f} s")
    n.shot("opened")
    yield n
    n.d.execute_script("document.querySelector('.jp-WindowedPanel-outer')?.scrollTo(0, 0);")
    n.shot("end-top")
    print("\ncell times: " + ", ".join(f"{k} {v:.1f} s" for k, v in n.timings.items()))


def test_load(nb):
    nb.run("load")
    assert_text(nb, "load", "toy-ioi")


def test_tokens(nb):
    nb.run("tokens")
    assert_text(nb, "tokens", "Mary", "John", "store")


def test_attribute_shows_heatmap(nb):
    nb.run("attribute")
    assert_clean(nb, "attribute")
    assert_picture_or_heatmap(nb, "attribute")


def test_compare_shows_heatmap(nb):
    nb.run("compare")
    assert_clean(nb, "compare")
    assert_picture_or_heatmap(nb, "compare", min_tokens=30)  # a row of tokens per method


def test_circuit_shows_graph(nb):
    nb.run("circuit")
    assert_clean(nb, "circuit")
    pics = pictures(nb, "circuit")
    print(f"circuit: pictures {pics}")
    assert pics, f"`{CELLS['circuit']}` displays no picture: {describe(nb.outputs('circuit'))}"
    assert_text(nb, "circuit", "faithfulness")


def test_config(nb):
    nb.run("config")
    assert_text(nb, "config", "freeze_norm", "ig_steps", "method")


def test_models(nb):
    nb.run("models")
    assert_text(nb, "models", "toy-ioi")


def test_help_is_markdown(nb):
    nb.run("help")
    assert_clean(nb, "help")
    md = [o for o in nb.outputs("help") if "jp-RenderedMarkdown" in (o.get_attribute("class") or "")
          and o.is_displayed() and o.rect["height"] > 0]
    assert md, f"`%gim help` is not rendered Markdown: {describe(nb.outputs('help'))}"
    assert "attribute" in md[0].text and "circuit" in md[0].text, md[0].text[:500]
    # Real Markdown (a list of magics), not one preformatted text block.
    items = [li for li in md[0].find_elements(By.CSS_SELECTOR, "li") if li.is_displayed()]
    assert len(items) >= 10, f"`%gim help` renders {len(items)} list items: {md[0].get_attribute('innerHTML')[:300]!r}"


def test_tab_completion(nb):
    cell = nb.cell("complete")
    nb.scroll_to(cell)
    nb.editor("complete").click()
    ActionChains(nb.d).send_keys("%gim att").perform()
    nb.wait(lambda: nb.source("complete") == "%gim att", 10, "the typed text in the editor")
    time.sleep(0.3)
    ActionChains(nb.d).send_keys(Keys.TAB).perform()

    def offered():
        items = [i.text for i in nb.d.find_elements(By.CSS_SELECTOR, ".jp-Completer .jp-Completer-item")
                 if i.is_displayed()]
        if "attribute" in nb.source("complete") or any("attribute" in i for i in items):
            return nb.source("complete"), items
        return None

    text, items = nb.wait(offered, 20, "the completer to offer `attribute`")
    nb.shot("completion")
    print(f"completion: editor {text!r}, completer items {items}")
    if "attribute" not in text:  # offered in the list: accept it
        ActionChains(nb.d).send_keys(Keys.ENTER).perform()
    nb.wait(lambda: nb.source("complete").startswith("%gim attribute"), 10,
            "`attribute` inserted into the editor")
    nb.shot("completion-accepted")
    ActionChains(nb.d).send_keys(Keys.ESCAPE).perform()


def test_interrupt_keeps_the_kernel(nb):
    nb.run("ig-steps")  # (how its output displays is checked on `%gim config` above)
    assert not nb.cell("ig-steps").find_elements(By.CSS_SELECTOR, f".jp-OutputArea-output{STDERR}"), \
        f"`{CELLS['ig-steps']}` failed: {describe(nb.outputs('ig-steps'))}"
    nb.start("long")
    nb.wait(lambda: nb.prompt("long") == "[*]:" and nb.status() == "busy", 30, "the long cell to be busy")
    time.sleep(2)  # well inside the integrated-gradients loop
    assert not nb.done("long"), "the long cell finished before it could be interrupted"
    nb.shot("long-busy")
    stop = nb.d.find_element(By.CSS_SELECTOR, '.jp-NotebookPanel-toolbar jp-button[data-command="notebook:interrupt-kernel"]')
    stop.click()
    t0 = time.monotonic()
    nb.wait(lambda: nb.done("long"), 30, "the interrupted cell to end")
    took = time.monotonic() - t0
    nb.wait(lambda: nb.status() == "idle", 30, "the kernel to go idle after the interrupt")
    nb.scroll_to(nb.cell("long"))
    nb.shot("interrupted")
    text = "\n".join(o.text for o in nb.outputs("long"))
    print(f"interrupt: the cell ended {took:.1f} s after the click; output {text!r}")
    assert took <= 10, f"the interrupted cell took {took:.1f} s to end"
    assert re.search(r"interrupt", text, re.I), f"no output says the cell was interrupted: {text!r}"
    assert "usage:" not in text, f"the interrupt printed a usage line: {text!r}"
    assert not any(o.find_elements(By.CSS_SELECTOR, JSON_TREE) for o in nb.outputs("long"))

    nb.run("models-after")
    assert_text(nb, "models-after", "toy-ioi")


def test_real_model_generates_and_attributes(nb):
    nb.run("load-real", timeout=120)
    assert_text(nb, "load-real", "smollm2-135m", "30 layers")
    nb.run("generate-real", timeout=120)
    assert_text(nb, "generate-real", "The capital of France is", "Paris")
    nb.run("attribute-real", timeout=120)
    assert_clean(nb, "attribute-real")
    assert_picture_or_heatmap(nb, "attribute-real")
    assert_text(nb, "attribute-real", "Mary", "John")


def test_real_model_circuits_over_a_data_set(nb):
    nb.run("circuit-data-real", timeout=CELL_TIMEOUT)
    assert_clean(nb, "circuit-data-real")
    pics = pictures(nb, "circuit-data-real")
    print(f"circuit --data: pictures {pics}")
    assert pics, f"`{CELLS['circuit-data-real']}` displays no picture: {describe(nb.outputs('circuit-data-real'))}"
    assert_text(nb, "circuit-data-real", "CPR", "CMD", "gim", "gradient", "random")
    # the progress line was updated in place to its final state
    text = " ".join(o.text for o in nb.outputs("circuit-data-real"))
    assert "circuit: starting" not in text and "find 0/" not in text, text[:400]
    assert "2 examples found the circuits, 2 evaluated them" in text, text[:400]


def test_no_json_tree_anywhere(nb):
    trees = nb.d.find_elements(By.CSS_SELECTOR, f".jp-Notebook {JSON_TREE}")
    assert not trees, f"{len(trees)} JSON tree(s) in the notebook"
