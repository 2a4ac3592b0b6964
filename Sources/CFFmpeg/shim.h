#ifndef FARM_CFFMPEG_SHIM_H
#define FARM_CFFMPEG_SHIM_H

#include <malloc.h>
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libavcodec/bsf.h>
#include <libavutil/avutil.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/hwcontext.h>
#include <libavutil/imgutils.h>
#include <libavutil/mathematics.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>

// Function-like macros and macro constants that Swift cannot import.

static inline int farm_AVERROR(int e) { return AVERROR(e); }
static inline int farm_AVERROR_EOF(void) { return AVERROR_EOF; }
static inline int farm_AVERROR_EAGAIN(void) { return AVERROR(EAGAIN); }
static inline int farm_AVERROR_INVALIDDATA(void) { return AVERROR_INVALIDDATA; }
static inline int farm_AVERROR_ENCODER_NOT_FOUND(void) { return AVERROR_ENCODER_NOT_FOUND; }
static inline int64_t farm_AV_NOPTS_VALUE(void) { return AV_NOPTS_VALUE; }
static inline int farm_AV_TIME_BASE(void) { return AV_TIME_BASE; }

/// Writes the message for an FFmpeg error code into `buffer` (av_err2str is a macro over a compound literal).
static inline void farm_av_strerror(int code, char *buffer, size_t size) {
    if (av_strerror(code, buffer, size) < 0) {
        snprintf(buffer, size, "error %d", code);
    }
}

/// The log callback is variadic; this sets the level only, leaving FFmpeg's own printer.
static inline void farm_av_log_set_level(int level) { av_log_set_level(level); }

/// Fixes glibc's mmap threshold (malloc.h is not in Swift's Glibc module): blocks of at least
/// `bytes` are mmapped and given back to the system when freed, whatever was freed before.
static inline int farm_fix_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

#endif
