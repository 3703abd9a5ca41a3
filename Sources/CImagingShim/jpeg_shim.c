// libjpeg(-turbo) behind a setjmp boundary, decoding as OpenCV's JpegDecoder (IMREAD_COLOR).
// See include/CImagingShim.h for the contract.
#include "CImagingShim.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

struct imshim_jpeg {
    struct jpeg_decompress_struct cinfo;   // first member: j_common_ptr casts back to the context
    struct jpeg_error_mgr err;
    jmp_buf jump;
    int created;
    int warnings;
    char message[JMSG_LENGTH_MAX];
    char warning[JMSG_LENGTH_MAX];        // first warning that loses data (EOF or corrupt class)
    char other_warning[JMSG_LENGTH_MAX];  // first benign one
    const uint8_t *data;
    size_t size;
};

static void shim_jpeg_error_exit(j_common_ptr common) {
    imshim_jpeg *ctx = (imshim_jpeg *)common;
    (*common->err->format_message)(common, ctx->message);
    longjmp(ctx->jump, 1);
}

// Warnings (level -1) are classified and remembered; trace messages are dropped. Nothing is printed.
static void shim_jpeg_emit_message(j_common_ptr common, int level) {
    if (level >= 0)
        return;
    imshim_jpeg *ctx = (imshim_jpeg *)common;
    common->err->num_warnings++;
    int kind;
    switch (common->err->msg_code) {
    case JWRN_JPEG_EOF:
        kind = IMSHIM_JPEG_WARN_EOF;
        break;
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_NOT_SEQUENTIAL:
    case JWRN_BOGUS_PROGRESSION:
        kind = IMSHIM_JPEG_WARN_CORRUPT;
        break;
    default:
        kind = IMSHIM_JPEG_WARN_OTHER;
        break;
    }
    ctx->warnings |= kind;
    char *text = kind == IMSHIM_JPEG_WARN_OTHER ? ctx->other_warning : ctx->warning;
    if (text[0] == 0)
        (*common->err->format_message)(common, text);
}

static void shim_jpeg_output_message(j_common_ptr common) { (void)common; }

// A failure of our own, under the same setjmp as libjpeg's errors.
static void shim_jpeg_fail(imshim_jpeg *ctx, const char *text) {
    snprintf(ctx->message, sizeof ctx->message, "%s", text);
    longjmp(ctx->jump, 1);
}

imshim_jpeg *imshim_jpeg_create(const uint8_t *data, size_t size) {
    imshim_jpeg *ctx = (imshim_jpeg *)calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->data = data;
    ctx->size = size;
    ctx->cinfo.err = jpeg_std_error(&ctx->err);
    ctx->err.error_exit = shim_jpeg_error_exit;
    ctx->err.emit_message = shim_jpeg_emit_message;
    ctx->err.output_message = shim_jpeg_output_message;
    if (setjmp(ctx->jump)) {
        imshim_jpeg_destroy(ctx);
        return NULL;
    }
    jpeg_create_decompress(&ctx->cinfo);
    ctx->created = 1;
    return ctx;
}

int imshim_jpeg_read_header(imshim_jpeg *ctx, uint32_t *width, uint32_t *height,
                            int *components, int *color_space, int *progressive, int *single_scan) {
    if (setjmp(ctx->jump))
        return 0;
    jpeg_mem_src(&ctx->cinfo, ctx->data, (unsigned long)ctx->size);
    // As OpenCV: keep APP1 segments (EXIF) whole.
    jpeg_save_markers(&ctx->cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&ctx->cinfo, TRUE);
    *width = ctx->cinfo.image_width;
    *height = ctx->cinfo.image_height;
    *components = ctx->cinfo.num_components;
    *color_space = (int)ctx->cinfo.jpeg_color_space;
    *progressive = ctx->cinfo.progressive_mode ? 1 : 0;
    // In a sequential file each component is in exactly one scan.
    *single_scan = !ctx->cinfo.progressive_mode && ctx->cinfo.comps_in_scan == ctx->cinfo.num_components;
    return 1;
}

int imshim_jpeg_first_app1(imshim_jpeg *ctx, const uint8_t **data, size_t *length) {
    for (jpeg_saved_marker_ptr m = ctx->cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1) {
            *data = m->data;
            *length = m->data_length;
            return 1;
        }
    }
    *data = NULL;
    *length = 0;
    return 0;
}

int imshim_jpeg_read(imshim_jpeg *ctx, uint8_t *out, uint32_t width, uint32_t height, int cmyk,
                     int *warnings_during_scan) {
    struct jpeg_decompress_struct *cinfo = &ctx->cinfo;
    *warnings_during_scan = 0;
    if (setjmp(ctx->jump))
        return 0;
    // OpenCV sets only the output colour space (JCS_EXT_BGR, or JCS_CMYK for 4 components) and
    // leaves libjpeg's defaults: JDCT_ISLOW, do_fancy_upsampling, scale 1/1. RGB is the same
    // conversion as EXT_BGR with the channels in the other order.
    cinfo->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(cinfo);
    int channels = cmyk ? 4 : 3;
    if (cinfo->output_width != width || cinfo->output_height != height || cinfo->output_components != channels)
        shim_jpeg_fail(ctx, "output size or channel count differs from the header");
    size_t stride = (size_t)width * (size_t)channels;
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW row = out + (size_t)cinfo->output_scanline * stride;
        if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
            shim_jpeg_fail(ctx, "libjpeg returned no scanline");   // a memory source never suspends; do not spin
    }
    *warnings_during_scan = ctx->warnings;
    // Every pixel is in place: like OpenCV (result = true before finish), errors in the trailing
    // markers are not fatal.
    if (setjmp(ctx->jump) == 0)
        jpeg_finish_decompress(cinfo);
    return 1;
}

int imshim_jpeg_warnings(const imshim_jpeg *ctx) { return ctx->warnings; }
const char *imshim_jpeg_warning(const imshim_jpeg *ctx) {
    return ctx->warning[0] ? ctx->warning : ctx->other_warning;
}
const char *imshim_jpeg_message(const imshim_jpeg *ctx) { return ctx->message; }

void imshim_jpeg_destroy(imshim_jpeg *ctx) {
    if (!ctx)
        return;
    if (ctx->created) {
        ctx->created = 0;
        if (setjmp(ctx->jump) == 0)   // jpeg_destroy only frees memory; guard it all the same
            jpeg_destroy_decompress(&ctx->cinfo);
    }
    free(ctx);
}
