"""Airflow plugin: the receiver for OpenDSR status callbacks (signed), served by the Airflow API server.

    POST {api server}/erasure-callbacks/opendsr/<vendor>

The processors call it with X-OpenDSR-Processor-Domain / X-OpenDSR-Signature; the signature is verified
against the processor's certificate before anything is believed (403 otherwise). Vendors do not log in
to Airflow: the signature is the authentication. The logic lives in vendorprivacy.erasure.callbacks.
Set VENDORPRIVACY_CALLBACK_BASE_URL (or the Variable vendorprivacy_callback_base_url) to the API
server's public URL to have the erasure runs hand this address to the processors.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

app = FastAPI(title="vendorprivacy erasure callbacks", docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/opendsr/{vendor}")
async def opendsr_callback(vendor: str, request: Request) -> JSONResponse:
    from vendorprivacy.erasure.callbacks import receive

    body = await request.body()
    status, doc = await run_in_threadpool(receive, vendor, dict(request.headers), body)
    return JSONResponse(doc, status_code=status)


class ErasureCallbacksPlugin(AirflowPlugin):
    name = "vendorprivacy_erasure_callbacks"
    fastapi_apps = [{"app": app, "url_prefix": "/erasure-callbacks", "name": "Erasure status callbacks (OpenDSR)"}]
