/*
 * limits.h: every bound trialsync enforces, in one place.
 *
 * Each limit is checked at run time before anything is allocated for the
 * input it bounds.  The numbers are chosen for clinical records of a few
 * hundred bytes; the comments say why each number is what it is.
 */
#ifndef TS_LIMITS_H
#define TS_LIMITS_H

/* Trial, node and site ids, record ids: short printable keys. */
#define TS_ID_BYTES_MAX 63
/* Record types are short words: subject, visit, ae, query, member. */
#define TS_TYPE_BYTES_MAX 15
/* Field names are SDTM-style variable names, at most 8 in SDTM, some longer. */
#define TS_FIELD_BYTES_MAX 31
/* A field value: a verbatim AE term or a query text fits in 4 KiB. */
#define TS_VALUE_BYTES_MAX 4096
/* A reason for change: a sentence or a paragraph. */
#define TS_REASON_BYTES_MAX 1024
/* A user name as the data-entry system gives it. */
#define TS_USER_BYTES_MAX 127
/* Fields written by one entry: a whole eCRF page is well under this. */
#define TS_WRITES_PER_ENTRY_MAX 64
/* Live writes one write can supersede: more means a conflict nobody resolved. */
#define TS_SUPERSEDES_MAX 32
/* One encoded entry: 64 writes of a few hundred bytes fit comfortably. */
#define TS_ENTRY_BYTES_MAX (64 * 1024)
/* Entries in one batch: one group commit or one replication batch. */
#define TS_BATCH_ENTRIES_MAX 1024
/* Encoded entries in one batch: bounds a receiver's memory per batch. */
#define TS_BATCH_BYTES_MAX (1024 * 1024)
/* One frame on a peer link: a full batch, its header and certificate. */
#define TS_FRAME_BYTES_MAX (TS_BATCH_BYTES_MAX + 64 * 1024)
/* SHA-256 chain hash. */
#define TS_HASH_BYTES 32
/* A node certificate (PEM) carried in a batch: an Ed25519 one is under 1 KiB. */
#define TS_CERT_BYTES_MAX (16 * 1024)
/* A hole on the wire: a 0 byte, then the chain hash after the hidden entry. */
#define TS_HOLE_WIRE_BYTES (1 + 32)
/* A certificate serial as uppercase hex (RFC 5280: at most 20 octets). */
#define TS_SERIAL_BYTES_MAX 40
/* Ed25519 signature. */
#define TS_SIG_BYTES_MAX 64
/* Distinct (origin, lane) chains a node tracks: 2 lanes x sites + hubs + admins. */
#define TS_CHAINS_MAX 4096
/* One HTTP request to the local API, headers and body together. */
#define TS_HTTP_REQUEST_BYTES_MAX (256 * 1024)
/* Concurrent local API connections: each holds a descriptor, and a node
 * started with the usual soft RLIMIT_NOFILE of 1024 needs the rest for
 * RocksDB's files and its peer links. */
#define TS_API_CONNECTIONS_MAX 512
/* Rows of one import request (POST /v1/import): they become one group
 * commit, so they must fit in one batch per lane.  1000 rows of a few hundred
 * bytes are about 250 KiB of JSON, under the request limit, and amortise a
 * round trip and an fsync over enough rows that neither dominates. */
#define TS_IMPORT_ROWS_MAX 1000
/* The body a client puts into one import request: below the request limit,
 * with room for the request line and headers. */
#define TS_IMPORT_REQUEST_BYTES_MAX (TS_HTTP_REQUEST_BYTES_MAX - 16 * 1024)

_Static_assert(TS_ENTRY_BYTES_MAX <= TS_BATCH_BYTES_MAX,
               "one entry must fit in a batch");
_Static_assert(TS_BATCH_BYTES_MAX < TS_FRAME_BYTES_MAX,
               "a full batch must fit in a frame");
_Static_assert(TS_CERT_BYTES_MAX * 2 < TS_FRAME_BYTES_MAX - TS_BATCH_BYTES_MAX,
               "a batch's certificate fits in a frame beside a full batch");
_Static_assert(TS_IMPORT_ROWS_MAX <= TS_BATCH_ENTRIES_MAX,
               "an import request's rows fit in one group commit");
_Static_assert(TS_IMPORT_REQUEST_BYTES_MAX < TS_HTTP_REQUEST_BYTES_MAX,
               "an import request's body leaves room for its headers");
_Static_assert(TS_VALUE_BYTES_MAX * 2 < TS_ENTRY_BYTES_MAX,
               "an entry must hold more than one maximal value");

#endif
