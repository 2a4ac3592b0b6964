#!/usr/bin/env python3
"""Drives a tus 1.0 server with tuspy, the stock Python client (scripts/install-test-tools.sh installs it), for
TusTests. Each command prints one JSON object on standard output.

  tus-client.py upload   ENDPOINT FILE [--chunk BYTES] [--checksum]   a whole upload
  tus-client.py break    ENDPOINT FILE --after BYTES                   create, then a PATCH cut after BYTES
  tus-client.py resume   UPLOAD-URL FILE [--chunk BYTES]               continue from the server's offset (HEAD)
  tus-client.py corrupt  ENDPOINT FILE                                 a chunk whose Upload-Checksum is wrong

ENDPOINT is the creation URL (http://host:port/files/); FARM_API_TOKEN, when set, goes as a bearer token.
"""
import argparse
import hashlib
import http.client
import json
import os
import sys
import time
import urllib.parse

from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed
from tusclient.uploader import Uploader


def make_client(url):
    token = os.environ.get("FARM_API_TOKEN")
    return tus_client.TusClient(url, headers={"Authorization": f"Bearer {token}"} if token else {})


def metadata(path):
    return {"filename": os.path.basename(path)}


def upload(args):
    client = make_client(args.url)
    uploader = client.uploader(
        args.file, chunk_size=args.chunk, metadata=metadata(args.file), upload_checksum=args.checksum)
    uploader.upload()
    return {"url": uploader.url, "offset": uploader.offset}


def cut(args):
    """Creates the upload with tuspy, then sends a PATCH for the whole file whose connection closes after
    `--after` bytes of the body, as a dropped connection would; waits until the server's offset settles."""
    client = make_client(args.url)
    uploader = client.uploader(args.file, chunk_size=1 << 40, metadata=metadata(args.file))
    url = uploader.create_url()
    data = open(args.file, "rb").read()
    target = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    connection.putrequest("PATCH", target.path)
    for name, value in dict(uploader.get_headers(), **{
        "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream", "Content-Length": str(len(data)),
    }).items():
        connection.putheader(name, value)
    connection.endheaders()
    connection.send(data[: args.after])
    connection.sock.close()
    offset, deadline = -1, time.time() + 10
    while time.time() < deadline:
        offset = Uploader(args.file, url=url, client=client).offset
        if offset == args.after:
            break
        time.sleep(0.05)
    return {"url": url, "offset": offset}


def resume(args):
    client = make_client(args.url)
    # Given the upload's URL, tuspy asks the server for its offset (HEAD) and continues from there.
    uploader = Uploader(args.file, url=args.url, client=client, chunk_size=args.chunk)
    resumed_from = uploader.offset
    uploader.upload()
    return {"url": uploader.url, "resumed_from": resumed_from, "offset": uploader.offset}


class CorruptingUploader(Uploader):
    """Sends an SHA-1 Upload-Checksum of other bytes than the chunk's."""

    CHECKSUM_ALGORITHM_PAIR = ("sha1", lambda chunk: hashlib.sha1(chunk + b"!"))


def corrupt(args):
    client = make_client(args.url)
    uploader = CorruptingUploader(
        args.file, client=client, chunk_size=1 << 40, metadata=metadata(args.file), upload_checksum=True)
    uploader.set_url(uploader.create_url())
    status, body = None, ""
    try:
        uploader.upload_chunk()
    except TusUploadFailed as error:
        status, body = error.status_code, (error.response_content or b"").decode("utf-8", "replace")
    offset = Uploader(args.file, url=uploader.url, client=client).offset
    return {"url": uploader.url, "status": status, "body": body, "offset": offset}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["upload", "break", "resume", "corrupt"])
    parser.add_argument("url")
    parser.add_argument("file")
    parser.add_argument("--chunk", type=int, default=1 << 40)
    parser.add_argument("--after", type=int, default=0)
    parser.add_argument("--checksum", action="store_true")
    args = parser.parse_args()
    command = {"upload": upload, "break": cut, "resume": resume, "corrupt": corrupt}[args.command]
    try:
        print(json.dumps(command(args)))
    except (TusCommunicationError, TusUploadFailed) as error:
        print(json.dumps({"error": str(error), "status": getattr(error, "status_code", None)}))
        sys.exit(1)


if __name__ == "__main__":
    main()
