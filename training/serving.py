"""`rapport serve` (llama-cpp-python's OpenAI-compatible server on a GGUF) and `rapport chat`
(a terminal chat with the domain's system prompt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rapport.config.errors import RapportError

GGUF_PREFIX = "gguf:"
CHAT_MAX_TOKENS = 256
QUIT_COMMANDS = frozenset({"/quit", "/exit"})


def resolve_gguf(model: str) -> Path:
    """The GGUF file a `--model` names: PATH, gguf:PATH, or `embedded` / `gguf:embedded` for
    the shipped SmolLM2, as the backend specs and `--base` take it."""
    from rapport.engine.backends.llamacpp_backend import (
        EMBEDDED_MODEL_NAME,
        INSTALL_EMBEDDED,
        embedded_model_path,
    )

    spec = model.removeprefix(GGUF_PREFIX)
    if spec == EMBEDDED_MODEL_NAME:
        found = embedded_model_path()
        if found is None:
            raise RapportError(f"--model {model}: the embedded model needs `{INSTALL_EMBEDDED}`")
        return found
    path = Path(spec).expanduser()
    if not path.is_file():
        raise RapportError(f"--model {model}: no such GGUF file")
    return path


def _check_model(model: Path) -> None:
    if not model.is_file():
        raise RapportError(f"--model {model}: no such GGUF file")


def serve(model: Path, host: str, port: int, n_ctx: int, alias: str | None = None) -> None:
    """Serve the model at http://HOST:PORT/v1 until interrupted; `alias` is its model name."""
    _check_model(model)
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    app = create_app(
        server_settings=ServerSettings(host=host, port=port),
        model_settings=[
            ModelSettings(
                model=str(model), model_alias=alias or model.stem, n_ctx=n_ctx, verbose=False
            )
        ],
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")


def chat(
    model: Path,
    system_prompt: str,
    read: Callable[[str], str],
    write: Callable[[str], None],
    n_ctx: int,
) -> int:
    """Chat until end of input or /quit; returns the number of replies."""
    _check_model(model)
    from llama_cpp import Llama

    llm = Llama(str(model), n_ctx=n_ctx, verbose=False)
    messages = [{"role": "system", "content": system_prompt}]
    replies = 0
    try:
        while True:
            try:
                line = read("you> ").strip()
            except EOFError:
                break
            if line in QUIT_COMMANDS:
                break
            if not line:
                continue
            messages.append({"role": "user", "content": line})
            response = llm.create_chat_completion(
                messages, max_tokens=CHAT_MAX_TOKENS, repeat_penalty=1.3
            )  # type: ignore[arg-type]
            text = (response["choices"][0]["message"]["content"] or "").strip()  # type: ignore[index]
            messages.append({"role": "assistant", "content": text})
            write(f"model> {text}")
            replies += 1
    finally:
        llm.close()
    return replies
