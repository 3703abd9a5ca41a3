// CImagingShim: the setjmp/longjmp boundary around libpng and libjpeg.
//
// Both libraries report fatal errors by calling an error handler that must not return
// (libpng longjmps, libjpeg's default error_exit calls exit()). Swift cannot call setjmp, so
// every libpng/libjpeg call that can fail is made from these C functions, under a setjmp
// installed here; the error handlers copy the library's message and longjmp back. Each function
// returns 1 on success and 0 on failure, with the message in `*_message(ctx)`.
// No Swift frame is ever on the stack between setjmp and longjmp.
//
// Decoding follows OpenCV's imread(IMREAD_COLOR) settings (modules/imgcodecs/src/grfmt_png.cpp,
// grfmt_jpeg.cpp, OpenCV 4.10); the policy (size limits, EXIF, which warnings are fatal) lives
// in Swift (Sources/Imaging/Decode.swift).
#ifndef CIMAGINGSHIM_H
#define CIMAGINGSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- PNG decoding ------------------------------------------------------------------------------
typedef struct imshim_png imshim_png;

/// A reader over `data[0..<size]` (not copied: it must outlive the reader). NULL if out of memory.
imshim_png *imshim_png_create(const uint8_t *data, size_t size);
/// png_read_info: the header and every chunk before the first IDAT.
int imshim_png_read_header(imshim_png *ctx, uint32_t *width, uint32_t *height,
                           int *bit_depth, int *color_type, int *interlaced);
/// The whole image as 8-bit RGB rows of `width * 3` bytes (`out` holds height * width * 3;
/// width and height are those of the header, checked again here),
/// transformed as OpenCV's PngDecoder::readData does for a 3-channel 8-bit Mat (16-bit -> high
/// byte, alpha stripped, palette expanded, gray replicated, Adam7 combined), then png_read_end.
int imshim_png_read_rgb8(imshim_png *ctx, uint8_t *out, uint32_t width, uint32_t height);
/// The eXIf chunk, if one was read (valid until destroy); 0 if none.
int imshim_png_exif(imshim_png *ctx, const uint8_t **data, size_t *length);
/// The first warning libpng issued (empty if none); warnings are not printed.
const char *imshim_png_warning(const imshim_png *ctx);
const char *imshim_png_message(const imshim_png *ctx);
void imshim_png_destroy(imshim_png *ctx);

// ---- PNG encoding ------------------------------------------------------------------------------
/// Encodes 8-bit RGB (palette == NULL, 3 bytes per pixel) or 8-bit indexed pixels (1 byte per
/// pixel, `palette` = palette_count RGB triples, 1...256) into a malloc'ed buffer (*out, *out_length;
/// release it with imshim_free). On failure, the message is copied into `message` (capacity
/// `message_capacity`).
int imshim_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height,
                      const uint8_t *palette, int palette_count,
                      uint8_t **out, size_t *out_length, char *message, size_t message_capacity);
void imshim_free(void *pointer);

// ---- JPEG decoding -----------------------------------------------------------------------------
typedef struct imshim_jpeg imshim_jpeg;

/// Warning classes recorded while decoding (bit mask), from libjpeg's emit_message(-1).
enum {
    IMSHIM_JPEG_WARN_EOF = 1,       // JWRN_JPEG_EOF: the data ended early (a fake EOI was inserted)
    IMSHIM_JPEG_WARN_CORRUPT = 2,   // bad Huffman/arithmetic code, premature end of a data segment, lost restart sync
    IMSHIM_JPEG_WARN_OTHER = 4,     // anything else (extraneous bytes before a marker, odd APPn, ...)
};

/// A decompressor over `data[0..<size]` (not copied). NULL if out of memory.
imshim_jpeg *imshim_jpeg_create(const uint8_t *data, size_t size);
/// jpeg_read_header (saving APP1 segments). color_space is libjpeg's J_COLOR_SPACE of the file;
/// single_scan is 1 for a sequential file whose first scan holds every component (so it has
/// exactly one scan).
int imshim_jpeg_read_header(imshim_jpeg *ctx, uint32_t *width, uint32_t *height,
                            int *components, int *color_space, int *progressive, int *single_scan);
/// The first APP1 segment's payload (after its length field), valid until destroy; 0 if none.
int imshim_jpeg_first_app1(imshim_jpeg *ctx, const uint8_t **data, size_t *length);
/// Decodes every scanline with libjpeg's defaults (islow IDCT, fancy upsampling) into `out`
/// (width and height as in the header, checked again here): RGB (3 bytes per pixel) when
/// cmyk == 0, else the raw CMYK output (4 bytes per pixel), as OpenCV asks for 4-component files.
/// Then jpeg_finish_decompress, whose errors are ignored as OpenCV ignores them (every pixel has
/// been read by then). *warnings_during_scan gets the warning mask raised before the last
/// scanline was read.
int imshim_jpeg_read(imshim_jpeg *ctx, uint8_t *out, uint32_t width, uint32_t height, int cmyk,
                     int *warnings_during_scan);
/// Mask of every warning so far, and the text of the first one that loses data (else of the first
/// benign one; "" if none).
int imshim_jpeg_warnings(const imshim_jpeg *ctx);
const char *imshim_jpeg_warning(const imshim_jpeg *ctx);
const char *imshim_jpeg_message(const imshim_jpeg *ctx);
void imshim_jpeg_destroy(imshim_jpeg *ctx);

#ifdef __cplusplus
}
#endif

#endif
