"""engine.progress: tqdm bars on stderr drawn only on a terminal, one summary line everywhere,
nothing at all when disabled; the (done, total, what) callback of the profilers."""
import io

from engine import progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal_redraws_in_place_and_ends_with_its_summary():
    out = _Tty()
    bar = progress.Bar("[x] epoch 1/2", 3, True, stream=out)
    for i in range(3):
        bar.step(f"loss {i}")
    bar.close("loss 0.5")
    text = out.getvalue()
    assert "\r[x] epoch 1/2 [" + "#" * progress.WIDTH + "] 3/3 loss 2" in text
    assert text.endswith("\r[x] epoch 1/2 loss 0.5 (0.0 s)\x1b[K\n")
    assert bar.done == 3


def test_bar_off_a_terminal_writes_only_the_summary_and_disabled_writes_nothing():
    log = io.StringIO()
    bar = progress.Bar("[x]", 2, True, stream=log)
    bar.step()
    bar.step()
    bar.close("done")
    assert log.getvalue() == "[x] done (0.0 s)\n"
    quiet = _Tty()
    bar = progress.Bar("[x]", 2, False, stream=quiet)
    bar.step()
    bar.close("done")
    progress.note("a line", enabled=False, stream=quiet)
    assert quiet.getvalue() == ""
    progress.note("a line", stream=log)
    assert log.getvalue().endswith("a line\n")


def test_callback_counts_units_and_leaves_the_last_line():
    out = io.StringIO()
    p = progress.callback("profiling x", unit="shapes", enabled=True, stream=out)
    p(1, 2, "shape-a")
    p(2, 2, "shape-b")
    text = out.getvalue()
    assert "1/2 shapes" in text and "2/2 shapes" in text and "shape-b" in text
    assert text.endswith("\n")
    quiet = io.StringIO()
    progress.callback("profiling x", stream=quiet)(1, 2, "x")     # not a terminal: off
    assert quiet.getvalue() == ""
