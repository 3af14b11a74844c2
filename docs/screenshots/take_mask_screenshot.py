"""The mask editor screenshot (docs/screenshots/mask.png), on the stand-in Fill engine:
PYTHONPATH=.:tests QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1280x800x24" python docs/screenshots/take_mask_screenshot.py"""
import os, sys, subprocess, tempfile
from pathlib import Path
sys.path.insert(0, "tests")
from PySide6.QtCore import QTimer, Qt
from PySide6.QtWidgets import QApplication
import app.worker as worker_module
from test_app_support import FakePipeline, fake_loader
from test_app_image_input import write_image
from test_app_mask import drag

tmp = Path(tempfile.mkdtemp())
os.environ["XDG_DATA_HOME"] = str(tmp / "xdg")
worker_module.load_pipeline = fake_loader(FakePipeline(variant="fill", model_name="fake-fill"))
(tmp / "FLUX.1-Fill-dev").mkdir()
from app.main import create_app
app, window = create_app(["mlx-flux-app", "--data-dir", str(tmp / "data"), "--model", str(tmp / "FLUX.1-Fill-dev")])
window.resize(1280, 800); window.move(0, 0); window.show()
photo = write_image(tmp / "room.png", (512, 384))
window.promptEdit.setPlainText("a sleeping cat on a red armchair")
window.input_controller.use_file(photo)
def step():
    if window.input_controller.is_loading():
        QTimer.singleShot(100, step); return
    QApplication.processEvents()
    c = window.maskCanvas
    window.maskPanel.brushSizeSpin.setValue(40)
    drag(c, [(180, 200), (220, 180), (260, 190), (300, 230), (320, 260)])
    drag(c, [(200, 260), (300, 280)])
    window.maskPanel.set_expand((0, 0, 0, 0))
    QTimer.singleShot(800, shoot)
def shoot():
    QApplication.processEvents()
    out = "docs/screenshots/mask.png"
    r = subprocess.run(["import", "-window", "root", "-crop", "1280x800+0+0", out])
    if r.returncode != 0:
        window.grab().save(out)
    app.quit()
QTimer.singleShot(1500, step)
app.exec()
