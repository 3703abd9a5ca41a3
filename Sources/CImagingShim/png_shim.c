// libpng behind a setjmp boundary: decoding as OpenCV's PngDecoder (IMREAD_COLOR), and encoding
// RGB / indexed PNGs into memory. See include/CImagingShim.h for the contract.
#include "CImagingShim.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Shared by the reader and the encoder: libpng's error_ptr points at this.
struct png_errors {
    jmp_buf jump;
    char message[256];
    char warning[256];
};

static void shim_png_error(png_structp png, png_const_charp text) {
    struct png_errors *errors = (struct png_errors *)png_get_error_ptr(png);
    snprintf(errors->message, sizeof errors->message, "%s", text ? text : "libpng error");
    longjmp(errors->jump, 1);
}

static void shim_png_warning(png_structp png, png_const_charp text) {
    struct png_errors *errors = (struct png_errors *)png_get_error_ptr(png);
    if (errors->warning[0] == 0)
        snprintf(errors->warning, sizeof errors->warning, "%s", text ? text : "libpng warning");
}

// ---- decoding ------------------------------------------------------------------------------------

struct imshim_png {
    struct png_errors errors;   // first member: error_ptr
    png_structp png;
    png_infop info;
    png_infop end_info;
    const uint8_t *data;
    size_t size;
    size_t position;
};

static void shim_png_read(png_structp png, png_bytep out, size_t length) {
    imshim_png *ctx = (imshim_png *)png_get_io_ptr(png);
    if (length > ctx->size - ctx->position)
        png_error(png, "unexpected end of data (the file is truncated)");
    memcpy(out, ctx->data + ctx->position, length);
    ctx->position += length;
}

imshim_png *imshim_png_create(const uint8_t *data, size_t size) {
    imshim_png *ctx = (imshim_png *)calloc(1, sizeof *ctx);
    if (!ctx)
        return NULL;
    ctx->data = data;
    ctx->size = size;
    // png_create_read_struct guards its own allocations; it returns NULL on failure.
    ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx->errors, shim_png_error, shim_png_warning);
    if (ctx->png) {
        ctx->info = png_create_info_struct(ctx->png);
        ctx->end_info = png_create_info_struct(ctx->png);
    }
    if (!ctx->png || !ctx->info || !ctx->end_info) {
        imshim_png_destroy(ctx);
        return NULL;
    }
    png_set_read_fn(ctx->png, ctx, shim_png_read);
    return ctx;
}

int imshim_png_read_header(imshim_png *ctx, uint32_t *width, uint32_t *height,
                           int *bit_depth, int *color_type, int *interlaced) {
    if (setjmp(ctx->errors.jump))
        return 0;
    png_read_info(ctx->png, ctx->info);
    png_uint_32 w = 0, h = 0;
    int depth = 0, color = 0, interlace = 0;
    png_get_IHDR(ctx->png, ctx->info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    *width = w;
    *height = h;
    *bit_depth = depth;
    *color_type = color;
    *interlaced = interlace != PNG_INTERLACE_NONE;
    return 1;
}

int imshim_png_read_rgb8(imshim_png *ctx, uint8_t *out, uint32_t width, uint32_t height) {
    png_structp png = ctx->png;
    if (width != png_get_image_width(png, ctx->info) || height != png_get_image_height(png, ctx->info) ||
        width == 0 || height == 0) {
        snprintf(ctx->errors.message, sizeof ctx->errors.message, "image size differs from the header");
        return 0;
    }
    png_bytep *rows = (png_bytep *)malloc((size_t)height * sizeof *rows);
    if (!rows) {
        snprintf(ctx->errors.message, sizeof ctx->errors.message, "out of memory");
        return 0;
    }
    for (size_t y = 0; y < height; y++)
        rows[y] = out + y * (size_t)width * 3;

    if (setjmp(ctx->errors.jump)) {
        free(rows);
        return 0;
    }
    int depth = png_get_bit_depth(png, ctx->info);
    int color = png_get_color_type(png, ctx->info);
    // The transforms of PngDecoder::readData for an 8-bit 3-channel Mat (OpenCV 4.10), in its
    // order, with RGB instead of png_set_bgr: 16-bit data keeps its high byte (png_set_strip_16
    // chops, it does not round), alpha is stripped without compositing, no gamma handling.
    if (depth == 16)
        png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if ((color & PNG_COLOR_MASK_COLOR) == 0 && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if ((color & PNG_COLOR_MASK_COLOR) == 0)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, ctx->info);
    if (png_get_rowbytes(png, ctx->info) != (size_t)width * 3)
        png_error(png, "unexpected row layout after the RGB transforms");
    png_read_image(png, rows);
    png_read_end(png, ctx->end_info);
    free(rows);
    return 1;
}

int imshim_png_exif(imshim_png *ctx, const uint8_t **data, size_t *length) {
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 count = 0;
    png_bytep exif = NULL;
    // As OpenCV: the eXIf chunk may come before the image data (info) or after it (end_info).
    if (png_get_valid(ctx->png, ctx->info, PNG_INFO_eXIf))
        png_get_eXIf_1(ctx->png, ctx->info, &count, &exif);
    else if (png_get_valid(ctx->png, ctx->end_info, PNG_INFO_eXIf))
        png_get_eXIf_1(ctx->png, ctx->end_info, &count, &exif);
    if (exif && count > 0) {
        *data = exif;
        *length = count;
        return 1;
    }
#else
    (void)ctx;
#endif
    *data = NULL;
    *length = 0;
    return 0;
}

const char *imshim_png_warning(const imshim_png *ctx) { return ctx->errors.warning; }
const char *imshim_png_message(const imshim_png *ctx) { return ctx->errors.message; }

void imshim_png_destroy(imshim_png *ctx) {
    if (!ctx)
        return;
    if (ctx->png)
        png_destroy_read_struct(&ctx->png, ctx->info ? &ctx->info : NULL, ctx->end_info ? &ctx->end_info : NULL);
    free(ctx);
}

// ---- encoding ------------------------------------------------------------------------------------

struct png_encoder {
    struct png_errors errors;   // first member: error_ptr
    uint8_t *data;
    size_t length;
    size_t capacity;
};

static void shim_png_write(png_structp png, png_bytep bytes, size_t count) {
    struct png_encoder *enc = (struct png_encoder *)png_get_io_ptr(png);
    if (count > enc->capacity - enc->length) {
        size_t capacity = enc->capacity ? enc->capacity : 65536;
        while (capacity - enc->length < count) {
            if (capacity > ((size_t)-1) / 2)
                png_error(png, "output too large");
            capacity *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc(enc->data, capacity);
        if (!grown)
            png_error(png, "out of memory");
        enc->data = grown;
        enc->capacity = capacity;
    }
    memcpy(enc->data + enc->length, bytes, count);
    enc->length += count;
}

static void shim_png_flush(png_structp png) { (void)png; }

int imshim_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                      const uint8_t *palette, int palette_count,
                      uint8_t **out, size_t *out_length, char *message, size_t message_capacity) {
    *out = NULL;
    *out_length = 0;
    if (width == 0 || height == 0 || (palette && (palette_count < 1 || palette_count > 256))) {
        snprintf(message, message_capacity, "invalid image size or palette");
        return 0;
    }
    struct png_encoder *enc = (struct png_encoder *)calloc(1, sizeof *enc);
    png_bytep *rows = (png_bytep *)malloc((size_t)height * sizeof *rows);
    png_structp png = enc ? png_create_write_struct(PNG_LIBPNG_VER_STRING, &enc->errors, shim_png_error,
                                                    shim_png_warning) : NULL;
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!enc || !rows || !png || !info) {
        if (png)
            png_destroy_write_struct(&png, info ? &info : NULL);
        free(rows);
        free(enc);
        snprintf(message, message_capacity, "out of memory");
        return 0;
    }
    size_t stride = (size_t)width * (palette ? 1 : 3);
    for (size_t y = 0; y < height; y++)
        rows[y] = (png_bytep)(pixels + y * stride);

    if (setjmp(enc->errors.jump)) {
        snprintf(message, message_capacity, "%s", enc->errors.message);
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(enc->data);
        free(enc);
        return 0;
    }
    png_set_write_fn(png, enc, shim_png_write, shim_png_flush);
    png_set_IHDR(png, info, width, height, 8, palette ? PNG_COLOR_TYPE_PALETTE : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) {
        png_color colors[256];
        for (int i = 0; i < palette_count; i++) {
            colors[i].red = palette[3 * i];
            colors[i].green = palette[3 * i + 1];
            colors[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, colors, palette_count);
    }
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *out = enc->data;
    *out_length = enc->length;
    free(enc);
    return 1;
}

void imshim_free(void *pointer) { free(pointer); }
