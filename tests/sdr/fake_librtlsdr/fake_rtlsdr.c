/*
 * A stand-in for librtlsdr, built by the tests (gcc -shared -fPIC), so that pyrtlsdr's real
 * code path (rtlsdr.RtlSdr calling into a C library through ctypes) runs without a dongle.
 *
 * It exports every symbol pyrtlsdr 0.5 binds when it is imported (rtlsdr/librtlsdr.py), with
 * librtlsdr's signatures, and behaves like one R820T dongle:
 *
 *   FAKE_RTLSDR_FILE          cu8 file whose bytes rtlsdr_read_async serves, in buffers of
 *                             buf_len; after the last whole buffer it idles until cancelled
 *   FAKE_RTLSDR_SERIAL        USB serial number (default "00000001")
 *   FAKE_RTLSDR_REALTIME      "1": pace the buffers at the sample rate that was set
 *   FAKE_RTLSDR_UNPLUG_AFTER  bytes served (over the library's life) after which the dongle is
 *                             "unplugged": rtlsdr_read_async returns FAKE_RTLSDR_UNPLUG_RC
 *                             (default -4, LIBUSB_ERROR_NO_DEVICE; real librtlsdr often
 *                             returns 0 then), and the device is absent for
 *                             FAKE_RTLSDR_ABSENT_S seconds (default 0.3); then it comes back
 *                             and serving resumes where it stopped
 *   FAKE_RTLSDR_LOSE_AT       file offset (bytes) at which FAKE_RTLSDR_LOSE_BYTES are lost, as
 *                             when the USB host falls behind: skipped in the file, and in
 *                             real-time mode their time passes without a callback
 *   FAKE_RTLSDR_LOG           file to which every configuration call is appended, one line
 *                             "name value" (so tests can check what the driver was asked)
 *
 * Like the real library, rtlsdr_set_freq_correction refuses an unchanged value (-2), which
 * makes pyrtlsdr close the device; sample rates outside 225001-300000 and 900001-3200000 Hz
 * are refused (-EINVAL). fake_rtlsdr_reset() re-reads the environment and rewinds.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*rtlsdr_read_async_cb_t)(unsigned char *buf, uint32_t len, void *ctx);

typedef struct rtlsdr_dev {
    uint32_t freq;
    uint32_t rate;
    int corr;
    int gain;
    int manual_gain;
    int agc;
    int bias_tee;
    int direct;
    int testmode;
    int dither;
    uint32_t bandwidth;
    volatile int cancel;
    volatile int async_running;
} rtlsdr_dev_t;

static const int R820T_GAINS[] = {0,   9,   14,  27,  37,  77,  87,  125, 144, 157,
                                  166, 197, 207, 229, 254, 280, 297, 328, 338, 364,
                                  372, 386, 402, 421, 434, 439, 445, 480, 496};
#define N_GAINS ((int)(sizeof(R820T_GAINS) / sizeof(R820T_GAINS[0])))
#define DEFAULT_BUF_LENGTH (16 * 32 * 512)

static unsigned char *g_data = NULL;
static long g_size = 0;
static long g_pos = 0;          /* next file byte to serve */
static long g_served = 0;       /* bytes served over the library's life */
static long g_unplug_after = -1;
static int g_unplug_rc = -4;
static int g_unplugged = 0;     /* the unplug happened (only once) */
static double g_absent_until = 0.0;
static double g_absent_s = 0.3;
static long g_lose_at = -1;
static long g_lose_bytes = 0;
static int g_realtime = 0;
static char g_serial[256] = "00000001";
static char g_log_path[4096] = "";
static int g_loaded = 0;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    return (v && *v) ? strtol(v, NULL, 10) : fallback;
}

static void log_call(const char *name, long value) {
    if (!g_log_path[0]) return;
    FILE *f = fopen(g_log_path, "a");
    if (!f) return;
    fprintf(f, "%s %ld\n", name, value);
    fclose(f);
}

int fake_rtlsdr_reset(void) {
    const char *v;
    free(g_data);
    g_data = NULL;
    g_size = g_pos = g_served = 0;
    g_unplugged = 0;
    g_absent_until = 0.0;
    v = getenv("FAKE_RTLSDR_FILE");
    if (v && *v) {
        FILE *f = fopen(v, "rb");
        if (!f) return -1;
        fseek(f, 0, SEEK_END);
        g_size = ftell(f);
        fseek(f, 0, SEEK_SET);
        g_data = malloc(g_size > 0 ? (size_t)g_size : 1);
        if (g_size > 0 && fread(g_data, 1, (size_t)g_size, f) != (size_t)g_size) g_size = 0;
        fclose(f);
    }
    v = getenv("FAKE_RTLSDR_SERIAL");
    snprintf(g_serial, sizeof g_serial, "%s", (v && *v) ? v : "00000001");
    v = getenv("FAKE_RTLSDR_LOG");
    snprintf(g_log_path, sizeof g_log_path, "%s", v ? v : "");
    g_realtime = (int)env_long("FAKE_RTLSDR_REALTIME", 0);
    g_unplug_after = env_long("FAKE_RTLSDR_UNPLUG_AFTER", -1);
    g_unplug_rc = (int)env_long("FAKE_RTLSDR_UNPLUG_RC", -4);
    v = getenv("FAKE_RTLSDR_ABSENT_S");
    g_absent_s = (v && *v) ? strtod(v, NULL) : 0.3;
    g_lose_at = env_long("FAKE_RTLSDR_LOSE_AT", -1);
    g_lose_bytes = env_long("FAKE_RTLSDR_LOSE_BYTES", 0);
    g_loaded = 1;
    return 0;
}

static void ensure_loaded(void) {
    if (!g_loaded) fake_rtlsdr_reset();
}

static int present(void) {
    ensure_loaded();
    return now_s() >= g_absent_until;
}

/* ---- enumeration ------------------------------------------------------------------------ */

uint32_t rtlsdr_get_device_count(void) { return present() ? 1 : 0; }

const char *rtlsdr_get_device_name(uint32_t index) {
    return (present() && index == 0) ? "Generic RTL2832U OEM (fake)" : "";
}

int rtlsdr_get_device_usb_strings(uint32_t index, char *manufact, char *product, char *serial) {
    if (!present() || index != 0) return -1;
    if (manufact) strcpy(manufact, "Realtek");
    if (product) strcpy(product, "RTL2838UHIDIR");
    if (serial) snprintf(serial, 256, "%s", g_serial);
    return 0;
}

int rtlsdr_get_index_by_serial(const char *serial) {
    if (!serial) return -1;
    if (!present()) return -2;
    return strcmp(serial, g_serial) == 0 ? 0 : -3;
}

int rtlsdr_open(rtlsdr_dev_t **dev, uint32_t index) {
    if (!present() || index != 0) return -1;
    *dev = calloc(1, sizeof(rtlsdr_dev_t));
    if (!*dev) return -1;
    (*dev)->rate = 2048000;
    (*dev)->freq = 100000000;
    log_call("open", (long)index);
    return 0;
}

int rtlsdr_close(rtlsdr_dev_t *dev) {
    if (!dev) return -1;
    log_call("close", 0);
    free(dev);
    return 0;
}

/* ---- configuration ---------------------------------------------------------------------- */

int rtlsdr_set_xtal_freq(rtlsdr_dev_t *dev, uint32_t rtl_freq, uint32_t tuner_freq) {
    (void)rtl_freq; (void)tuner_freq;
    return dev ? 0 : -1;
}

int rtlsdr_get_xtal_freq(rtlsdr_dev_t *dev, uint32_t *rtl_freq, uint32_t *tuner_freq) {
    if (!dev) return -1;
    if (rtl_freq) *rtl_freq = 28800000;
    if (tuner_freq) *tuner_freq = 28800000;
    return 0;
}

int rtlsdr_get_usb_strings(rtlsdr_dev_t *dev, char *manufact, char *product, char *serial) {
    if (!dev) return -1;
    return rtlsdr_get_device_usb_strings(0, manufact, product, serial);
}

int rtlsdr_set_center_freq(rtlsdr_dev_t *dev, uint32_t freq) {
    if (!dev) return -1;
    dev->freq = freq;
    log_call("set_center_freq", (long)freq);
    return 0;
}

uint32_t rtlsdr_get_center_freq(rtlsdr_dev_t *dev) { return dev ? dev->freq : 0; }

int rtlsdr_set_freq_correction(rtlsdr_dev_t *dev, int ppm) {
    if (!dev) return -1;
    if (dev->corr == ppm) return -2; /* librtlsdr: unchanged value */
    dev->corr = ppm;
    log_call("set_freq_correction", (long)ppm);
    return 0;
}

int rtlsdr_get_freq_correction(rtlsdr_dev_t *dev) { return dev ? dev->corr : 0; }

int rtlsdr_get_tuner_type(rtlsdr_dev_t *dev) { return dev ? 5 : 0; /* RTLSDR_TUNER_R820T */ }

int rtlsdr_get_tuner_gains(rtlsdr_dev_t *dev, int *gains) {
    if (!dev) return -1;
    if (gains) memcpy(gains, R820T_GAINS, sizeof R820T_GAINS);
    return N_GAINS;
}

int rtlsdr_set_tuner_gain(rtlsdr_dev_t *dev, int gain) {
    if (!dev) return -1;
    dev->gain = gain;
    log_call("set_tuner_gain", (long)gain);
    return 0;
}

int rtlsdr_get_tuner_gain(rtlsdr_dev_t *dev) { return dev ? dev->gain : 0; }

int rtlsdr_set_tuner_bandwidth(rtlsdr_dev_t *dev, uint32_t bw) {
    if (!dev) return -1;
    dev->bandwidth = bw;
    return 0;
}

int rtlsdr_set_and_get_tuner_bandwidth(rtlsdr_dev_t *dev, uint32_t bw, uint32_t *applied_bw, int apply_bw) {
    if (!dev) return -1;
    if (apply_bw) dev->bandwidth = bw;
    if (applied_bw) *applied_bw = bw;
    return 0;
}

int rtlsdr_set_tuner_if_gain(rtlsdr_dev_t *dev, int stage, int gain) {
    (void)stage; (void)gain;
    return dev ? 0 : -1;
}

int rtlsdr_set_tuner_gain_mode(rtlsdr_dev_t *dev, int manual) {
    if (!dev) return -1;
    dev->manual_gain = manual;
    log_call("set_tuner_gain_mode", (long)manual);
    return 0;
}

int rtlsdr_set_sample_rate(rtlsdr_dev_t *dev, uint32_t rate) {
    if (!dev) return -1;
    if (rate <= 225000 || rate > 3200000 || (rate > 300000 && rate <= 900000)) return -EINVAL;
    dev->rate = rate;
    log_call("set_sample_rate", (long)rate);
    return 0;
}

uint32_t rtlsdr_get_sample_rate(rtlsdr_dev_t *dev) { return dev ? dev->rate : 0; }

int rtlsdr_set_testmode(rtlsdr_dev_t *dev, int on) {
    if (!dev) return -1;
    dev->testmode = on;
    return 0;
}

int rtlsdr_set_agc_mode(rtlsdr_dev_t *dev, int on) {
    if (!dev) return -1;
    dev->agc = on;
    log_call("set_agc_mode", (long)on);
    return 0;
}

int rtlsdr_set_direct_sampling(rtlsdr_dev_t *dev, int on) {
    if (!dev) return -1;
    dev->direct = on;
    return 0;
}

int rtlsdr_get_direct_sampling(rtlsdr_dev_t *dev) { return dev ? dev->direct : -1; }

int rtlsdr_set_offset_tuning(rtlsdr_dev_t *dev, int on) { (void)on; return dev ? 0 : -1; }

int rtlsdr_get_offset_tuning(rtlsdr_dev_t *dev) { return dev ? 0 : -1; }

int rtlsdr_set_dithering(rtlsdr_dev_t *dev, int on) {
    if (!dev) return -1;
    dev->dither = on;
    return 0;
}

int rtlsdr_set_bias_tee(rtlsdr_dev_t *dev, int on) {
    if (!dev) return -1;
    dev->bias_tee = on;
    log_call("set_bias_tee", (long)on);
    return 0;
}

int rtlsdr_set_gpio_output(rtlsdr_dev_t *dev, uint8_t gpio) { (void)gpio; return dev ? 0 : -1; }
int rtlsdr_set_gpio_input(rtlsdr_dev_t *dev, uint8_t gpio) { (void)gpio; return dev ? 0 : -1; }
int rtlsdr_set_gpio_bit(rtlsdr_dev_t *dev, uint8_t gpio, int val) { (void)gpio; (void)val; return dev ? 0 : -1; }

int rtlsdr_get_gpio_bit(rtlsdr_dev_t *dev, uint8_t gpio, int *val) {
    (void)gpio;
    if (!dev) return -1;
    if (val) *val = 0;
    return 0;
}

int rtlsdr_set_gpio_byte(rtlsdr_dev_t *dev, int val) { (void)val; return dev ? 0 : -1; }

int rtlsdr_get_gpio_byte(rtlsdr_dev_t *dev, int *val) {
    if (!dev) return -1;
    if (val) *val = 0;
    return 0;
}

int rtlsdr_set_gpio_status(rtlsdr_dev_t *dev, int *status) {
    if (!dev) return -1;
    if (status) *status = 0;
    return 0;
}

/* ---- streaming -------------------------------------------------------------------------- */

int rtlsdr_reset_buffer(rtlsdr_dev_t *dev) { return dev ? 0 : -1; }

int rtlsdr_read_sync(rtlsdr_dev_t *dev, void *buf, int len, int *n_read) {
    long n;
    if (!dev || len < 0) return -1;
    ensure_loaded();
    n = g_size - g_pos < len ? g_size - g_pos : len;
    if (n > 0) memcpy(buf, g_data + g_pos, (size_t)n);
    g_pos += n > 0 ? n : 0;
    if (n_read) *n_read = (int)(n > 0 ? n : 0);
    return 0;
}

int rtlsdr_read_async(rtlsdr_dev_t *dev, rtlsdr_read_async_cb_t cb, void *ctx, uint32_t buf_num, uint32_t buf_len) {
    double t_next;
    (void)buf_num;
    if (!dev || !cb) return -1;
    ensure_loaded();
    if (!present()) return -4;
    if (buf_len == 0) buf_len = DEFAULT_BUF_LENGTH;
    if (buf_len % 512) return -2;
    dev->cancel = 0;
    dev->async_running = 1;
    t_next = now_s();
    while (!dev->cancel) {
        double buf_s = (double)buf_len / (2.0 * (double)(dev->rate ? dev->rate : 1));
        if (g_unplug_after >= 0 && !g_unplugged && g_served + (long)buf_len > g_unplug_after) {
            g_unplugged = 1;
            g_absent_until = now_s() + g_absent_s;
            dev->async_running = 0;
            log_call("unplug", g_pos);
            return g_unplug_rc;
        }
        if (g_lose_at >= 0 && g_pos >= g_lose_at && g_lose_bytes > 0) {
            long lost = g_lose_bytes;
            g_lose_at = -1;
            g_pos += lost;
            if (g_realtime) t_next += (double)lost / (2.0 * (double)dev->rate);
            log_call("lose", lost);
        }
        if (g_pos + (long)buf_len > g_size) { /* end of the file: a live dongle that went quiet */
            struct timespec pause = {0, 1000000};
            nanosleep(&pause, NULL);
            continue;
        }
        if (g_realtime) {
            t_next += buf_s;
            sleep_until(t_next);
        }
        cb(g_data + g_pos, buf_len, ctx);
        g_pos += buf_len;
        g_served += buf_len;
    }
    dev->async_running = 0;
    return 0;
}

int rtlsdr_wait_async(rtlsdr_dev_t *dev, rtlsdr_read_async_cb_t cb, void *ctx) {
    return rtlsdr_read_async(dev, cb, ctx, 0, 0);
}

int rtlsdr_cancel_async(rtlsdr_dev_t *dev) {
    if (!dev) return -1;
    dev->cancel = 1;
    return dev->async_running ? 0 : -2;
}
