"""What setup.cfg declares matches what the code needs."""
import configparser
import os
import re

SETUP_CFG = os.path.join(os.path.dirname(__file__), os.pardir, "setup.cfg")


def _declared_floor(package):
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    for line in config["options"]["install_requires"].splitlines():
        match = re.fullmatch(rf"{package}>=(\d+)\.(\d+)", line.strip())
        if match:
            return int(match.group(1)), int(match.group(2))
    raise AssertionError(f"no {package}>=X.Y in setup.cfg's install_requires")


def test_torch_floor_covers_gradscaler_of_a_device_and_process_group_device_id():
    # torch.amp.GradScaler("cuda") came in 2.3, init_process_group(device_id=) in 2.2.
    assert _declared_floor("torch") >= (2, 3)
