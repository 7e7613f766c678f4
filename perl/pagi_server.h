/* The C ABI of the Rust codec core (src/ffi.rs): HTTP/1.1, WebSocket, HTTP/2. The two must
 * change together: PAGI_LAYOUT below lists every struct and field as this compiler lays
 * them out, and pagi_abi_check() compares it row by row (name, offset, size) with the
 * list Rust derives from its own declarations (ffi::LAYOUT) when the XS object boots. */
#ifndef PAGI_SERVER_H
#define PAGI_SERVER_H

#include <stddef.h>
#include <stdint.h>

#define PAGI_PANIC   (-1) /* a Rust panic was caught: croak */
#define PAGI_PARTIAL 0    /* need more bytes */
#define PAGI_DONE    1    /* success */
#define PAGI_ERROR   2    /* invalid input: see the error field */

/* Bytes; ptr == NULL means undef. Points into the caller's input or into per-thread
 * scratch space of the Rust side, valid until the next call on the same thread. */
typedef struct {
    const unsigned char *ptr;
    size_t len;
} pagi_span;

typedef struct {
    pagi_span name;   /* lowercased */
    pagi_span value;
    uint32_t name_id; /* id of a known string (pagi_known_string), 0 if unknown */
} pagi_field;

typedef struct {
    pagi_span method, path, raw_path, query_string, upgrade, ws_key, ws_version, host;
    const pagi_field *headers;
    size_t n_headers;
    size_t consumed;
    int64_t content_length;   /* -1: undef */
    uint32_t method_id;       /* id of a known string, 0 if unknown */
    int32_t error;            /* error kind code when PAGI_ERROR */
    uint8_t http_minor, chunked, keep_alive, sse, expect_continue, path_utf8;
} pagi_request;

typedef struct {
    size_t start, len;
} pagi_range;

typedef struct {
    const pagi_range *ranges;
    size_t n_ranges;
    size_t data_len;
    size_t consumed;
    int64_t state;
    int32_t error;
} pagi_chunked;

#define PAGI_WIDE_NAME  1u
#define PAGI_WIDE_VALUE 2u

typedef struct {
    const unsigned char *name;
    size_t name_len;
    const unsigned char *value;
    size_t value_len;
    uint32_t wide;
} pagi_field_in;

/* serialize_response's flag bits (src/response.rs FLAG_*: HEAD 1, CLOSE 2, HTTP10 4,
 * UPGRADE 8); other bits of the app's value are ignored */
#define PAGI_FLAGS 15

/* pagi_response.error: an app row of the error table (lib/PAGI/Server/Protocol/errors.tsv,
 * its place among the app rows; the message comes from pagi_error_info(PAGI_TABLE_APP)) */
#define PAGI_BAD_STATUS         1
#define PAGI_BAD_NAME           2
#define PAGI_BAD_VALUE          3
#define PAGI_BAD_LENGTH         4 /* a content-length value that is not 1*18DIGIT */
#define PAGI_CONFLICTING_LENGTH 5 /* content-length values that disagree */
#define PAGI_H2_STREAM_CLOSED   6 /* HTTP/2: the stream is not open */
#define PAGI_H2_ALREADY_STARTED 7 /* HTTP/2: a final response was already started */
#define PAGI_H2_NOT_STARTED     8 /* HTTP/2: no final response yet */
#define PAGI_H2_ALREADY_ENDED   9 /* HTTP/2: the body already ended */
#define PAGI_BAD_SHAPE         10 /* (the glue's own check: headers not [[name, value], ...]) */

typedef struct {
    const unsigned char *head;
    size_t head_len;
    int32_t error;       /* PAGI_BAD_* / PAGI_CONFLICTING_LENGTH when PAGI_ERROR */
    size_t error_index;  /* the header concerned */
    int64_t length;      /* body bytes announced when mode is 1, else -1 (undef) */
    int32_t mode;
    uint8_t close;
    uint8_t append_body;
} pagi_response;

typedef struct {
    int32_t kind;        /* 0 other family, 1 inet (text = host), 2 unix (text = path) */
    int32_t port;
    size_t len;
    unsigned char text[112];
} pagi_endpoint;

typedef struct {
    pagi_endpoint peer, local;
} pagi_conninfo;

/* pagi_accept's result */
typedef struct {
    int32_t fd;
    int32_t err;         /* the errno when accept4 failed */
    pagi_endpoint peer, local;
} pagi_accepted;

/* A client WebSocket frame: its masked payload is payload_len bytes at
 * buf + payload_offset (unmask with pagi_ws_mask) */
typedef struct {
    size_t payload_offset;
    size_t payload_len;
    size_t consumed;
    int32_t error;       /* WebSocket error code when PAGI_ERROR */
    uint8_t fin, opcode;
    uint8_t rsv1;        /* a compressed message's first frame (only when rsv1_ok) */
    unsigned char key[4];
} pagi_ws_frame;

/* HTTP/2 (src/h2.rs): pagi_h2_new's settings */
typedef struct {
    uint64_t rst_burst, rst_rate, max_headers;
    pagi_span upgrade;                  /* HTTP2-Settings of an h2c upgrade; NULL: none */
    uint32_t max_concurrent_streams, initial_window_size, max_frame_size, max_header_list_size;
    uint8_t enable_connect_protocol, enable_push, upgrade_head;
} pagi_h2_settings;

#define PAGI_H2_EV_REQUEST  1
#define PAGI_H2_EV_DATA     2
#define PAGI_H2_EV_TRAILERS 3
#define PAGI_H2_EV_RESET    4
#define PAGI_H2_EV_CLOSED   5
#define PAGI_H2_EV_GOAWAY   6
#define PAGI_H2_EV_ERROR    7

/* One event. Request parts are set for a request that is not refused; fields for a
 * request and trailers. code: RESET/GOAWAY the error code, ERROR an h2 kind code,
 * REQUEST an h2req kind code when refused (else 0). */
typedef struct {
    pagi_span data, method, path, raw_path, query_string, scheme, protocol;
    const pagi_field *fields;
    size_t n_fields;
    int64_t content_length;   /* -1: undef */
    int32_t kind;
    int32_t stream_id;        /* the last stream id for GOAWAY */
    uint32_t code;
    uint8_t end_stream, sse, expect_continue, path_utf8;
} pagi_h2_event;

/* One row of a layout list: "struct" (offset 0, its size) or "struct.field" */
typedef struct {
    const char *name;
    size_t offset;
    size_t size;
} pagi_layout;

#define PAGI_STRUCT(T) { #T, 0, sizeof(T) }
#define PAGI_FIELD(T, f) { #T "." #f, offsetof(T, f), sizeof(((T *)0)->f) }

/* permessage-deflate (src/deflate.rs): pagi_deflate_new's parameters */
typedef struct {
    int32_t level, mem_level;
    uint8_t server_max_window_bits, server_no_context_takeover, client_no_context_takeover;
} pagi_deflate_params;

/* Every shared struct, then each of its fields, in declaration order (as ffi::LAYOUT) */
#define PAGI_LAYOUT { \
    PAGI_STRUCT(pagi_span), PAGI_FIELD(pagi_span, ptr), PAGI_FIELD(pagi_span, len), \
    PAGI_STRUCT(pagi_field), PAGI_FIELD(pagi_field, name), PAGI_FIELD(pagi_field, value), \
    PAGI_FIELD(pagi_field, name_id), \
    PAGI_STRUCT(pagi_request), PAGI_FIELD(pagi_request, method), PAGI_FIELD(pagi_request, path), \
    PAGI_FIELD(pagi_request, raw_path), PAGI_FIELD(pagi_request, query_string), \
    PAGI_FIELD(pagi_request, upgrade), PAGI_FIELD(pagi_request, ws_key), \
    PAGI_FIELD(pagi_request, ws_version), PAGI_FIELD(pagi_request, host), \
    PAGI_FIELD(pagi_request, headers), PAGI_FIELD(pagi_request, n_headers), \
    PAGI_FIELD(pagi_request, consumed), PAGI_FIELD(pagi_request, content_length), \
    PAGI_FIELD(pagi_request, method_id), PAGI_FIELD(pagi_request, error), \
    PAGI_FIELD(pagi_request, http_minor), PAGI_FIELD(pagi_request, chunked), \
    PAGI_FIELD(pagi_request, keep_alive), PAGI_FIELD(pagi_request, sse), \
    PAGI_FIELD(pagi_request, expect_continue), PAGI_FIELD(pagi_request, path_utf8), \
    PAGI_STRUCT(pagi_range), PAGI_FIELD(pagi_range, start), PAGI_FIELD(pagi_range, len), \
    PAGI_STRUCT(pagi_chunked), PAGI_FIELD(pagi_chunked, ranges), PAGI_FIELD(pagi_chunked, n_ranges), \
    PAGI_FIELD(pagi_chunked, data_len), PAGI_FIELD(pagi_chunked, consumed), \
    PAGI_FIELD(pagi_chunked, state), PAGI_FIELD(pagi_chunked, error), \
    PAGI_STRUCT(pagi_field_in), PAGI_FIELD(pagi_field_in, name), PAGI_FIELD(pagi_field_in, name_len), \
    PAGI_FIELD(pagi_field_in, value), PAGI_FIELD(pagi_field_in, value_len), \
    PAGI_FIELD(pagi_field_in, wide), \
    PAGI_STRUCT(pagi_response), PAGI_FIELD(pagi_response, head), PAGI_FIELD(pagi_response, head_len), \
    PAGI_FIELD(pagi_response, error), PAGI_FIELD(pagi_response, error_index), \
    PAGI_FIELD(pagi_response, length), PAGI_FIELD(pagi_response, mode), \
    PAGI_FIELD(pagi_response, close), PAGI_FIELD(pagi_response, append_body), \
    PAGI_STRUCT(pagi_endpoint), PAGI_FIELD(pagi_endpoint, kind), PAGI_FIELD(pagi_endpoint, port), \
    PAGI_FIELD(pagi_endpoint, len), PAGI_FIELD(pagi_endpoint, text), \
    PAGI_STRUCT(pagi_conninfo), PAGI_FIELD(pagi_conninfo, peer), PAGI_FIELD(pagi_conninfo, local), \
    PAGI_STRUCT(pagi_accepted), PAGI_FIELD(pagi_accepted, fd), PAGI_FIELD(pagi_accepted, err), \
    PAGI_FIELD(pagi_accepted, peer), PAGI_FIELD(pagi_accepted, local), \
    PAGI_STRUCT(pagi_ws_frame), PAGI_FIELD(pagi_ws_frame, payload_offset), \
    PAGI_FIELD(pagi_ws_frame, payload_len), PAGI_FIELD(pagi_ws_frame, consumed), \
    PAGI_FIELD(pagi_ws_frame, error), PAGI_FIELD(pagi_ws_frame, fin), \
    PAGI_FIELD(pagi_ws_frame, opcode), PAGI_FIELD(pagi_ws_frame, rsv1), \
    PAGI_FIELD(pagi_ws_frame, key), \
    PAGI_STRUCT(pagi_h2_settings), PAGI_FIELD(pagi_h2_settings, rst_burst), \
    PAGI_FIELD(pagi_h2_settings, rst_rate), PAGI_FIELD(pagi_h2_settings, max_headers), \
    PAGI_FIELD(pagi_h2_settings, upgrade), PAGI_FIELD(pagi_h2_settings, max_concurrent_streams), \
    PAGI_FIELD(pagi_h2_settings, initial_window_size), PAGI_FIELD(pagi_h2_settings, max_frame_size), \
    PAGI_FIELD(pagi_h2_settings, max_header_list_size), \
    PAGI_FIELD(pagi_h2_settings, enable_connect_protocol), PAGI_FIELD(pagi_h2_settings, enable_push), \
    PAGI_FIELD(pagi_h2_settings, upgrade_head), \
    PAGI_STRUCT(pagi_h2_event), PAGI_FIELD(pagi_h2_event, data), PAGI_FIELD(pagi_h2_event, method), \
    PAGI_FIELD(pagi_h2_event, path), PAGI_FIELD(pagi_h2_event, raw_path), \
    PAGI_FIELD(pagi_h2_event, query_string), PAGI_FIELD(pagi_h2_event, scheme), \
    PAGI_FIELD(pagi_h2_event, protocol), PAGI_FIELD(pagi_h2_event, fields), \
    PAGI_FIELD(pagi_h2_event, n_fields), PAGI_FIELD(pagi_h2_event, content_length), \
    PAGI_FIELD(pagi_h2_event, kind), PAGI_FIELD(pagi_h2_event, stream_id), PAGI_FIELD(pagi_h2_event, code), \
    PAGI_FIELD(pagi_h2_event, end_stream), PAGI_FIELD(pagi_h2_event, sse), \
    PAGI_FIELD(pagi_h2_event, expect_continue), PAGI_FIELD(pagi_h2_event, path_utf8), \
    PAGI_STRUCT(pagi_deflate_params), PAGI_FIELD(pagi_deflate_params, level), \
    PAGI_FIELD(pagi_deflate_params, mem_level), PAGI_FIELD(pagi_deflate_params, server_max_window_bits), \
    PAGI_FIELD(pagi_deflate_params, server_no_context_takeover), \
    PAGI_FIELD(pagi_deflate_params, client_no_context_takeover), \
    PAGI_STRUCT(pagi_layout), PAGI_FIELD(pagi_layout, name), PAGI_FIELD(pagi_layout, offset), \
    PAGI_FIELD(pagi_layout, size) }

/* 1 when `layout` (n rows, PAGI_LAYOUT) matches Rust's; else 0, with *mismatch the name
 * of the first row that differs */
int pagi_abi_check(const pagi_layout *layout, size_t n, const char **mismatch);
void pagi_init(void);
int pagi_parse_request(const unsigned char *buf, size_t len, int64_t max_header_size,
                       int64_t max_headers, int64_t max_line, pagi_request *out);
int pagi_decode_chunked(const unsigned char *buf, size_t len, int64_t state,
                        int64_t max_trailer_size, pagi_chunked *out);
int pagi_serialize_response(const unsigned char *status, size_t status_len,
                            const pagi_field_in *headers, size_t n, uint32_t flags,
                            int has_body, size_t body_len, pagi_response *out);
int pagi_check_headers(const pagi_field_in *headers, size_t n, pagi_response *out);
int pagi_check_status(const unsigned char *status, size_t len);
int pagi_set_server(const unsigned char *value, size_t len);
int pagi_serialize_trailers(const pagi_field_in *headers, size_t n, pagi_response *out);
size_t pagi_chunk_prefix(size_t len, unsigned char *out /* >= 18 bytes */);
int pagi_connection_info(int fd, pagi_conninfo *out);
/* A connection accepted on listening socket lfd (non-blocking, close-on-exec; nodelay:
 * TCP_NODELAY): PAGI_DONE with out's fd, peer (and local when want_local); PAGI_ERROR
 * with out->err the errno; PAGI_PANIC */
int pagi_accept(int lfd, int nodelay, int want_local, pagi_accepted *out);
/* The error tables (src/error.rs): kind and message (static) and, as the return value,
 * the number (HTTP status, close code) of error `code`; 0 when there is none */
#define PAGI_TABLE_HTTP  0
#define PAGI_TABLE_WS    1
#define PAGI_TABLE_H2    2 /* number: the RFC 9113 error code */
#define PAGI_TABLE_H2REQ 3 /* number: the HTTP status */
#define PAGI_TABLE_APP   4 /* application misuse; number: 500 */
int pagi_error_info(int table, int code, const char **kind, const char **message);
const unsigned char *pagi_reason_phrase(int status, size_t *len);
const unsigned char *pagi_known_string(uint32_t id, size_t *len);
const unsigned char *pagi_last_panic(size_t *len);
int pagi_debug_panic(int code);

int pagi_ws_parse_frame(const unsigned char *buf, size_t len, int64_t max_payload,
                        int rsv1_ok, pagi_ws_frame *out);
/* dst = src XOR key repeated (as mask_payload computes it, for any key length); src and
 * dst must not overlap. PAGI_DONE or PAGI_PANIC. */
int pagi_ws_mask(const unsigned char *src, size_t len, const unsigned char *key,
                 size_t key_len, unsigned char *dst);
size_t pagi_ws_frame_header(uint8_t byte0, uint64_t len, unsigned char *out /* >= 10 bytes */);
int pagi_ws_utf8_check(const unsigned char *p, size_t len);

/* HTTP/2 sessions (opaque). Events and output point into the handle, valid until the
 * next call on it. */
typedef struct PagiH2 pagi_h2;
#define PAGI_H2_BUFFERED       1
#define PAGI_H2_CONSUMED       2
#define PAGI_H2_RESET          3
#define PAGI_H2_GOAWAY         4 /* arg: the code; id: graceful */
#define PAGI_H2_WANT_WRITE     5
#define PAGI_H2_IS_CLOSED      6
#define PAGI_H2_OPEN_STREAMS   7
#define PAGI_H2_LAST_STREAM_ID 8
#define PAGI_H2_ERROR          9 /* the connection error's h2 kind code, 0: none */
int pagi_h2_new(const pagi_h2_settings *s, pagi_h2 **out, int32_t *error);
void pagi_h2_free(pagi_h2 *h);
int pagi_h2_feed(pagi_h2 *h, const unsigned char *buf, size_t len, const pagi_h2_event **events,
                 size_t *n, int32_t *error);
int pagi_h2_events(pagi_h2 *h, const pagi_h2_event **events, size_t *n);
int pagi_h2_output(pagi_h2 *h, size_t max, pagi_span *out);
int pagi_h2_respond(pagi_h2 *h, int32_t id, const unsigned char *status, size_t status_len,
                    const pagi_field_in *headers, size_t n, int end_stream, pagi_response *out);
int pagi_h2_send_data(pagi_h2 *h, int32_t id, const unsigned char *data, size_t len, int end,
                      pagi_response *out);
int pagi_h2_send_trailers(pagi_h2 *h, int32_t id, const pagi_field_in *headers, size_t n,
                          pagi_response *out);
int pagi_h2_call(pagi_h2 *h, int op, int32_t id, uint64_t arg, int64_t *result);

/* permessage-deflate contexts (opaque). A result points into the thread's scratch space,
 * valid until the next call on the same thread (one buffer for every context). pagi_deflate_new: PAGI_DONE, PAGI_ERROR (a parameter out of range),
 * PAGI_PANIC; pagi_deflate_compress: PAGI_DONE or PAGI_PANIC; pagi_deflate_decompress:
 * PAGI_DONE, PAGI_ERROR (a WebSocket error code in *error), PAGI_PANIC. */
typedef struct PagiDeflate pagi_deflate;
int pagi_deflate_new(const pagi_deflate_params *p, pagi_deflate **out);
void pagi_deflate_free(pagi_deflate *h);
int pagi_deflate_compress(pagi_deflate *h, const unsigned char *buf, size_t len, pagi_span *out);
int pagi_deflate_decompress(pagi_deflate *h, const unsigned char *buf, size_t len, int64_t max,
                            int fin, pagi_span *out, int32_t *error);
/* The result was copied (or an error returned): a large result buffer is let go */
void pagi_deflate_taken(void);

#endif
