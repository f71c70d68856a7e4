from aiosite import App

app = App("home", prefix="")
