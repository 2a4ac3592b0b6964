/// The OpenAPI 3 document of the HTTP API, served at `GET /openapi.yaml`. It is embedded so the
/// binary needs no file beside it; `docs/openapi.yaml` holds the same text, and `HTTPAPITests`
/// checks that the two agree and that every route is documented and every documented path is routed.
enum OpenAPIDocument {
    static let yaml = #"""
openapi: 3.0.3
info:
  title: farm coordinator API
  version: 1.0.0
  description: |
    The HTTP API of `farm coordinator --http HOST:PORT`: submit video encoding jobs, follow them,
    cancel them, download their outputs, and watch the render nodes.

    Every error answers `{"error": "..."}` saying what was wrong. Every request but /health and
    /ready must send `Authorization: Bearer <token>` with the coordinator's API token
    (`FARM_API_TOKEN`, `--api-token-file`, or the one it keeps in DATA-DIR/api-token); /metrics
    too, unless the coordinator runs with `--metrics-open`.
servers:
  - url: http://127.0.0.1:8080
security:
  - bearer: []
paths:
  /jobs:
    post:
      summary: Submit a job
      description: |
        Four ways to give the source:
        - `application/json` (or `application/x-www-form-urlencoded`) with `source`, an absolute path
          that must lie under a `--source-root` once symlinks and `..` are resolved, or an http(s) URL
          that the coordinator downloads when the job runs (phase `downloading`; resumed after a broken
          transfer, retried with backoff, within `--max-download-gib` and `--download-time-limit`;
          targets and redirects that resolve to loopback, private or link-local addresses are refused
          unless `--allow-private-urls` or `--allow-private-host` allows them). A HEAD request before
          the job is queued answers 400 at once when the announced size is over the limit or a
          redirect is refused;
        - `application/json` with `upload`, the id of a finished resumable upload (`POST /uploads`),
          and optionally `sha256`, the file's SHA-256 that the received bytes must match;
        - `multipart/form-data` with the file in a part that has a filename, and the other fields as
          form fields;
        - the file itself as the body (`application/octet-stream` or `video/*`), with the other
          fields as query parameters and the file name in `filename` or `X-Filename`.
        Uploads stream to disk and are removed when the job ends. The output goes to
        `<data dir>/outputs/<uuid>.<container>` and is served by `GET /jobs/{id}/output`.
      operationId: submitJob
      parameters:
        - {name: codec, in: query, required: false, schema: {$ref: '#/components/schemas/Codec'}, description: For raw uploads.}
        - {name: crf, in: query, required: false, schema: {type: integer}, description: For raw uploads.}
        - {name: preset, in: query, required: false, schema: {$ref: '#/components/schemas/Preset'}, description: For raw uploads.}
        - {name: container, in: query, required: false, schema: {$ref: '#/components/schemas/Container'}, description: For raw uploads.}
        - {name: segment_seconds, in: query, required: false, schema: {type: number}, description: For raw uploads.}
        - {name: filename, in: query, required: false, schema: {type: string}, description: The uploaded file's name, for raw uploads.}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/JobRequest'}
          application/x-www-form-urlencoded:
            schema: {$ref: '#/components/schemas/JobRequest'}
          multipart/form-data:
            schema:
              type: object
              required: [file]
              properties:
                file: {type: string, format: binary}
                codec: {$ref: '#/components/schemas/Codec'}
                crf: {type: integer}
                preset: {$ref: '#/components/schemas/Preset'}
                container: {$ref: '#/components/schemas/Container'}
                segment_seconds: {type: number}
          application/octet-stream:
            schema: {type: string, format: binary}
      responses:
        '201':
          description: The job is queued.
          headers:
            Location: {schema: {type: string}, description: The job's URL.}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Created'}
        '400': {$ref: '#/components/responses/Error'}
        '401': {$ref: '#/components/responses/Error'}
        '403': {$ref: '#/components/responses/Error'}
        '413': {$ref: '#/components/responses/Error'}
        '409': {$ref: '#/components/responses/Error'}
        '415': {$ref: '#/components/responses/Error'}
        '429': {$ref: '#/components/responses/Error'}
    get:
      summary: List jobs, oldest first
      operationId: listJobs
      responses:
        '200':
          description: Every job.
          content:
            application/json:
              schema:
                type: object
                required: [jobs]
                properties:
                  jobs: {type: array, items: {$ref: '#/components/schemas/Job'}}
        '401': {$ref: '#/components/responses/Error'}
  /jobs/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      summary: A job's state, progress, speed, ETA and segments
      operationId: getJob
      responses:
        '200':
          description: The job.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Job'}
        '401': {$ref: '#/components/responses/Error'}
        '404': {$ref: '#/components/responses/Error'}
    delete:
      summary: Cancel a job
      description: The nodes encoding its segments are told to stop at once.
      operationId: cancelJob
      responses:
        '200':
          description: The job, now cancelled.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Job'}
        '401': {$ref: '#/components/responses/Error'}
        '404': {$ref: '#/components/responses/Error'}
        '409': {$ref: '#/components/responses/Error'}
  /jobs/{id}/output:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      summary: The finished output file
      description: Supports a single `Range: bytes=...` (206 with `Content-Range`); several ranges get the whole file.
      operationId: getOutput
      parameters:
        - {name: Range, in: header, required: false, schema: {type: string}, example: bytes=0-1023}
      responses:
        '200':
          description: The whole file.
          content:
            video/mp4: {schema: {type: string, format: binary}}
            video/x-matroska: {schema: {type: string, format: binary}}
            video/quicktime: {schema: {type: string, format: binary}}
        '206':
          description: The requested range.
          headers:
            Content-Range: {schema: {type: string}, description: 'bytes START-END/SIZE'}
          content:
            video/mp4: {schema: {type: string, format: binary}}
        '401': {$ref: '#/components/responses/Error'}
        '404': {$ref: '#/components/responses/Error'}
        '409': {$ref: '#/components/responses/Error'}
        '410': {$ref: '#/components/responses/Error'}
        '416': {$ref: '#/components/responses/Error'}
  /uploads:
    post:
      summary: Begin a resumable upload
      description: |
        Declares the file's size (at most `--max-upload-gib`); the bytes follow in chunks with
        `PUT /uploads/{id}`, each under the 100 MB request-body limit of Akash's ingress. At most
        `--max-uploads` uploads (of every kind) are received at once: beyond, 429 with Retry-After.
        An upload nobody adds to for 6 hours is removed.
      operationId: createUpload
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [size]
              additionalProperties: false
              properties:
                size: {type: integer, minimum: 1, description: The file's length in bytes.}
                filename: {type: string, description: The file's name, shown as the job's source.}
      responses:
        '201':
          description: The upload, at offset 0.
          headers:
            Location: {schema: {type: string}, description: The upload's URL.}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Upload'}
        '400': {$ref: '#/components/responses/Error'}
        '401': {$ref: '#/components/responses/Error'}
        '413': {$ref: '#/components/responses/Error'}
        '429': {$ref: '#/components/responses/Error'}
  /uploads/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      summary: A resumable upload's offset
      description: How many bytes arrived, in order; the next chunk starts there. A client whose connection broke asks here and resumes.
      operationId: getUpload
      responses:
        '200':
          description: The upload.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Upload'}
        '401': {$ref: '#/components/responses/Error'}
        '404': {$ref: '#/components/responses/Error'}
    put:
      summary: Append a chunk
      description: |
        The body is the chunk, `Content-Range: bytes FIRST-LAST/TOTAL` says where it goes: FIRST must be
        the upload's offset (409 with an `Upload-Offset` header otherwise), TOTAL its size, and the
        chunk at most 90 MiB. Bytes stream to disk as they arrive; when a connection breaks, what
        arrived is kept and the offset says where to continue.
      operationId: appendUpload
      parameters:
        - {name: Content-Range, in: header, required: true, schema: {type: string}, example: bytes 0-33554431/104857600}
      requestBody:
        required: true
        content:
          application/octet-stream:
            schema: {type: string, format: binary}
      responses:
        '200':
          description: The upload after the chunk; `complete` and `sha256` once every byte arrived.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Upload'}
        '400': {$ref: '#/components/responses/Error'}
        '401': {$ref: '#/components/responses/Error'}
        '404': {$ref: '#/components/responses/Error'}
        '409': {$ref: '#/components/responses/Error'}
        '413': {$ref: '#/components/responses/Error'}
    delete:
      summary: Abandon a resumable upload
      operationId: deleteUpload
      responses:
        '204': {description: The upload and its bytes are gone.}
        '401': {$ref: '#/components/responses/Error'}
        '404': {$ref: '#/components/responses/Error'}
  /nodes:
    get:
      summary: Connected render nodes
      operationId: listNodes
      responses:
        '200':
          description: Every connected node.
          content:
            application/json:
              schema:
                type: object
                required: [nodes]
                properties:
                  nodes: {type: array, items: {$ref: '#/components/schemas/Node'}}
        '401': {$ref: '#/components/responses/Error'}
  /health:
    get:
      summary: Liveness
      operationId: health
      security: []
      responses:
        '200':
          description: The process answers.
          content:
            application/json:
              schema: {type: object, properties: {status: {type: string, example: ok}}}
  /ready:
    get:
      summary: 'Readiness: the coordinator can accept jobs'
      operationId: ready
      security: []
      responses:
        '200':
          description: Ready.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Ready'}
        '503':
          description: Not ready, with the reason.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Ready'}
  /api:
    get:
      summary: An index of the endpoints
      operationId: index
      responses:
        '200':
          description: Every endpoint with a summary.
          content:
            application/json:
              schema:
                type: object
                properties:
                  openapi: {type: string}
                  endpoints:
                    type: array
                    items:
                      type: object
                      properties:
                        method: {type: string}
                        path: {type: string}
                        summary: {type: string}
        '401': {$ref: '#/components/responses/Error'}
  /validate-system:
    get:
      summary: Check FFmpeg, hardware, disk, data directory, database and nodes
      description: 200 when no check failed; 503 naming the failed checks. No connected node is a warning.
      operationId: validateSystem
      responses:
        '200':
          description: Every check passed or warned.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Validation'}
        '401': {$ref: '#/components/responses/Error'}
        '503':
          description: Some check failed.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Validation'}
  /metrics:
    get:
      summary: Prometheus metrics
      description: |
        farm_jobs{state}, farm_queue_depth, farm_segments_waiting, farm_oldest_wait_seconds,
        farm_segments_completed_total, farm_segments_per_second, farm_encode_fps, farm_nodes,
        farm_node_slots, farm_node_slots_in_use, farm_utilisation, farm_http_bytes_in_total,
        farm_http_bytes_out_total, farm_fallbacks_total, farm_scale_up (1 when more than 10 jobs wait
        or a job has waited more than 30 s) and farm_scale_down_hint (1 when utilisation has stayed
        under 30 % for the scale-down window). Gauges are computed at scrape time. Needs the API
        token unless the coordinator runs with `--metrics-open`.
      operationId: metrics
      responses:
        '200':
          description: The Prometheus text format.
          content:
            text/plain: {schema: {type: string}}
        '401': {$ref: '#/components/responses/Error'}
  /openapi.yaml:
    get:
      summary: This document
      operationId: openapi
      responses:
        '200':
          description: OpenAPI 3 in YAML.
          content:
            application/yaml: {schema: {type: string}}
        '401': {$ref: '#/components/responses/Error'}
  # tus 1.0 resumable uploads (https://tus.io/protocols/resumable-upload): core, creation, termination, checksum,
  # expiration. Served by plain Hummingbird routes (the bodies stream to disk); every answer carries Tus-Resumable.
  /files:
    options:
      summary: 'tus: what this server supports'
      description: Answered without a token when it is a browser's CORS preflight (Origin and Access-Control-Request-Method).
      operationId: tusOptions
      responses:
        '204':
          description: The tus version, extensions, size limit (`--max-upload-gib`) and checksum algorithms.
          headers:
            Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
            Tus-Version: {schema: {type: string, const: 1.0.0}}
            Tus-Extension: {schema: {type: string, examples: ['creation,termination,checksum,expiration']}}
            Tus-Max-Size: {schema: {type: integer, minimum: 1}}
            Tus-Checksum-Algorithm: {schema: {type: string, examples: ['sha1,sha256,sha512,md5']}}
        '401': {$ref: '#/components/responses/TusError'}
    post:
      summary: 'tus: create an upload'
      description: |
        Declares the file's size (`Upload-Length`, at most `--max-upload-gib`: 413 beyond) and, in `Upload-Metadata`,
        its name (`filename` or `name`), shown as the job's source. At most `--max-uploads` uploads of every kind are
        received at once: beyond, 429 with Retry-After. The bytes follow with PATCH at the URL in `Location`; its last
        part is the id that `POST /jobs {"upload": ID}` takes once the upload is complete. The same upload is also
        `/uploads/{id}`.
      operationId: tusCreate
      parameters:
        - {$ref: '#/components/parameters/TusResumable'}
        - {name: Upload-Length, in: header, required: true, schema: {$ref: '#/components/schemas/TusByteCount'}}
        - {name: Upload-Metadata, in: header, required: false, schema: {$ref: '#/components/schemas/TusMetadata'}}
      responses:
        '201':
          description: The upload, at offset 0.
          headers:
            Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
            Location: {required: true, schema: {type: string, examples: [/files/up-0b6e2a4c-5d41-4b7a-9a3e-2f1c8d9e7a60]}}
            Upload-Expires: {$ref: '#/components/headers/TusExpires'}
        '400': {$ref: '#/components/responses/TusError'}
        '401': {$ref: '#/components/responses/TusError'}
        '412': {$ref: '#/components/responses/TusError'}
        '413': {$ref: '#/components/responses/TusError'}
        '429': {$ref: '#/components/responses/TusError'}
  /files/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    options:
      summary: 'tus: what this server supports'
      operationId: tusOptionsUpload
      responses:
        '204':
          description: The same as OPTIONS /files.
          headers:
            Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
            Tus-Version: {schema: {type: string, const: 1.0.0}}
        '401': {$ref: '#/components/responses/TusError'}
    head:
      summary: "tus: an upload's offset"
      description: How many bytes arrived, in order; a client whose connection broke asks here and resumes. No body.
      operationId: tusHead
      parameters:
        - {$ref: '#/components/parameters/TusResumable'}
      responses:
        '200':
          description: The upload.
          headers:
            Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
            Upload-Offset: {$ref: '#/components/headers/TusOffset'}
            Upload-Length: {required: true, schema: {$ref: '#/components/schemas/TusByteCount'}}
            Upload-Metadata: {schema: {$ref: '#/components/schemas/TusMetadata'}}
            Upload-Expires: {$ref: '#/components/headers/TusExpires'}
            Cache-Control: {schema: {type: string, const: no-store}}
        '401': {description: No or a wrong bearer token.}
        '404': {description: 'No such upload: never made, removed, expired, or already a job.'}
        '412': {description: Tus-Resumable missing or not 1.0.0.}
    patch:
      summary: 'tus: append a chunk'
      description: |
        The body goes at `Upload-Offset`, which must be the upload's offset (409 with the offset otherwise); at most
        90 MiB a request (413 beyond). Bytes stream to disk; when a connection breaks, what arrived is kept. With
        `Upload-Checksum`, the chunk counts only when it arrived whole and matches (460 otherwise, and the offset
        stays). Each chunk moves `Upload-Expires` on.
      operationId: tusPatch
      parameters:
        - {$ref: '#/components/parameters/TusResumable'}
        - {name: Upload-Offset, in: header, required: true, schema: {$ref: '#/components/schemas/TusOffset'}}
        - {name: Upload-Checksum, in: header, required: false, schema: {$ref: '#/components/schemas/TusChecksum'}}
      requestBody:
        required: true
        content:
          application/offset+octet-stream:
            schema: {type: string, contentMediaType: application/octet-stream}
      responses:
        '204':
          description: The chunk is stored.
          headers:
            Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
            Upload-Offset: {$ref: '#/components/headers/TusOffset'}
            Upload-Expires: {$ref: '#/components/headers/TusExpires'}
        '400': {$ref: '#/components/responses/TusError'}
        '401': {$ref: '#/components/responses/TusError'}
        '404': {$ref: '#/components/responses/TusError'}
        '409': {$ref: '#/components/responses/TusError'}
        '412': {$ref: '#/components/responses/TusError'}
        '413': {$ref: '#/components/responses/TusError'}
        '415': {$ref: '#/components/responses/TusError'}
        '460': {$ref: '#/components/responses/TusError'}
    delete:
      summary: 'tus: abandon an upload'
      operationId: tusDelete
      parameters:
        - {$ref: '#/components/parameters/TusResumable'}
      responses:
        '204':
          description: The upload and its bytes are gone.
          headers:
            Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
        '401': {$ref: '#/components/responses/TusError'}
        '404': {$ref: '#/components/responses/TusError'}
        '412': {$ref: '#/components/responses/TusError'}
components:
  securitySchemes:
    bearer: {type: http, scheme: bearer}
  # The tus block's own components (see /files).
  parameters:
    TusResumable: {name: Tus-Resumable, in: header, required: true, schema: {type: string, const: 1.0.0}}
  headers:
    TusResumable: {required: true, schema: {type: string, const: 1.0.0}}
    TusOffset: {required: true, schema: {$ref: '#/components/schemas/TusOffset'}}
    TusExpires:
      description: When the upload goes if no more bytes arrive (RFC 9110 HTTP date).
      schema: {type: string, examples: ['Thu, 03 Dec 2026 22:30:00 GMT']}
  responses:
    Error:
      description: What was wrong.
      content:
        application/json:
          schema: {$ref: '#/components/schemas/Error'}
    TusError:
      description: What was wrong (tus answers carry Tus-Resumable too).
      headers:
        Tus-Resumable: {$ref: '#/components/headers/TusResumable'}
      content:
        application/json:
          schema: {$ref: '#/components/schemas/TusError'}
  schemas:
    Error:
      type: object
      required: [error]
      properties:
        error: {type: string}
    Codec: {type: string, enum: [h264, hevc, av1], default: h264}
    Container: {type: string, enum: [mp4, mkv, mov], default: mp4}
    Preset:
      type: string
      enum: [ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow, placebo]
      default: medium
    JobRequest:
      type: object
      additionalProperties: false
      description: One of source and upload is required.
      properties:
        source: {type: string, description: 'An absolute path under a source root, or an http(s) URL the coordinator downloads.'}
        upload: {type: string, description: The id of a finished resumable upload.}
        sha256: {type: string, description: 'With upload: the SHA-256 (hex) the uploaded bytes must have.'}
        codec: {$ref: '#/components/schemas/Codec'}
        crf: {type: integer, minimum: 0, maximum: 63, description: 0-51 for h264 and hevc, 0-63 for av1; default per codec (23, 28, 35).}
        preset: {$ref: '#/components/schemas/Preset'}
        container: {$ref: '#/components/schemas/Container'}
        segment_seconds: {type: number, minimum: 0.5, maximum: 3600, description: Target segment length; chosen from the fleet when absent.}
    Created:
      type: object
      required: [id, state, url]
      properties:
        id: {type: string}
        state: {type: string, enum: [queued]}
        url: {type: string}
    Segment:
      type: object
      required: [index, state, attempts, node, encoder, frames]
      properties:
        index: {type: integer}
        state: {type: string, enum: [pending, queued, running, done]}
        attempts: {type: integer}
        node: {type: string, nullable: true}
        encoder: {type: string, nullable: true}
        frames: {type: integer}
    Job:
      type: object
      required: [id, state, phase, progress, fps, eta_s, error, segments, source, output_url, frames_done, total_frames, source_s, wall_s, encoders_by_node, fallbacks, dropped]
      properties:
        id: {type: string}
        state: {type: string, enum: [queued, running, done, failed, cancelled]}
        phase: {type: string, description: 'queued, downloading, indexing, encoding, assembling, verifying, publishing, finished'}
        progress: {type: number, minimum: 0, maximum: 1}
        fps: {type: number, description: Frames encoded per second since encoding began.}
        eta_s: {type: number, nullable: true, description: Seconds left; null until a speed is known.}
        error: {type: string, nullable: true}
        segments: {type: array, items: {$ref: '#/components/schemas/Segment'}}
        source: {type: string, description: 'The path, or upload:NAME for an uploaded file.'}
        output_url: {type: string, nullable: true, description: Where to download the output once the job is done.}
        frames_done: {type: integer}
        total_frames: {type: integer}
        source_s: {type: number, description: Duration of the source in seconds.}
        wall_s: {type: number, description: Seconds since the job was submitted (until it finished).}
        encoders_by_node: {type: object, additionalProperties: {type: string}}
        fallbacks: {type: integer}
        dropped: {type: array, items: {type: string}, description: Source streams the output could not carry.}
        downloaded_bytes: {type: integer, description: 'Sources given by URL: bytes downloaded so far.'}
        download_total_bytes: {type: integer, description: 'Sources given by URL: the full size, once the server said it.'}
    Upload:
      type: object
      required: [id, offset, size, complete, url]
      properties:
        id: {type: string}
        offset: {type: integer, description: Bytes received in order; the next chunk starts here.}
        size: {type: integer}
        complete: {type: boolean}
        filename: {type: string}
        sha256: {type: string, description: The SHA-256 (hex) of the received bytes once complete.}
        url: {type: string}
    Node:
      type: object
      required: [id, address, state, slots, slots_in_use, threads, segments_done, fps, last_heartbeat_s, capabilities]
      properties:
        id: {type: string}
        address: {type: string}
        state: {type: string, enum: [idle, working, busy, draining, quarantined, stale]}
        slots: {type: integer}
        slots_in_use: {type: integer}
        threads: {type: integer}
        segments_done: {type: integer}
        fps: {type: number, nullable: true, description: Frames per second measured between observations; null until measured.}
        last_heartbeat_s: {type: number, description: Seconds since the node was last heard from.}
        capabilities: {type: object, description: The node's hardware probe report.}
        quarantined_for_s: {type: number, description: 'While quarantined after repeated failures: seconds until it takes work again.'}
        quarantine_reason: {type: string, description: Why the node was quarantined.}
    Ready:
      type: object
      required: [ready, nodes, unfinished_jobs]
      properties:
        ready: {type: boolean}
        nodes: {type: integer}
        unfinished_jobs: {type: integer}
        error: {type: string}
    Validation:
      type: object
      required: [ok, failed, checks]
      properties:
        ok: {type: boolean}
        failed: {type: array, items: {type: string}}
        checks:
          type: array
          items:
            type: object
            required: [name, status, detail]
            properties:
              name: {type: string, enum: [ffmpeg, hardware, disk, data_dir, output_dir, database, nodes]}
              status: {type: string, enum: [ok, warning, failed, skipped]}
              detail: {type: string}
    TusByteCount: {type: integer, minimum: 1, description: The file's length in bytes.}
    TusOffset: {type: integer, minimum: 0, description: Bytes received in order; the next chunk starts here.}
    TusMetadata:
      type: string
      description: 'Comma-separated KEY BASE64-VALUE pairs (a key may stand alone), at most 4096 bytes; filename or name names the source.'
      examples: ['filename Y2xpcC5tcDQ=,is_private']
    TusChecksum:
      type: string
      pattern: '^(sha1|sha256|sha512|md5) [A-Za-z0-9+/=]+$'
      description: The chunk's digest, ALGORITHM BASE64.
    TusError:
      type: object
      required: [error]
      properties:
        error: {type: string}

"""#
}
