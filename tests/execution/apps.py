"""A ClientApp for the executor tests (importable by worker processes): what it does is
chosen by the message's ``config["do"]``."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from corolla.client import ClientApp
from corolla.core import ArrayRecord, ConfigRecord, Context, Message, RecordDict

app = ClientApp()


@app.train()
def train(message: Message, context: Context) -> Message:
    do = str(message.content["config"]["do"])
    if do == "exit":
        os._exit(3)
    if do == "sys-exit":
        sys.exit(4)
    if do == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if do == "hang":
        time.sleep(300)
    arrays = ArrayRecord({"w": np.asarray(message.content["arrays"]["w"]) + 1})
    where = ConfigRecord({"cwd": os.getcwd(), "pid": os.getpid()})
    return Message(RecordDict({"arrays": arrays, "where": where}), reply_to=message)
