/* The kernels' side of bptt's thread pool (threadpool.h, in bptt._threadpool):
 * each kernel module imports the pool's entry point once, like NumPy's
 * import_array, so every module shares the one pool and its workers. */
#ifndef BPTT_THREADPOOL_API_H
#define BPTT_THREADPOOL_API_H

#include <Python.h>

/* One part of a split kernel: fn(args, part, n_parts). */
typedef void (*bptt_part_fn)(void *args, int part, int n_parts);

typedef struct {
    void (*run_parts)(bptt_part_fn fn, void *args, int n_parts, int n_threads);
} bptt_threadpool_api;

#define BPTT_THREADPOOL_CAPSULE "bptt._threadpool._C_API"

static const bptt_threadpool_api *bptt_threadpool_entry = NULL;

static int bptt_import_threadpool(void) {
    /* PyCapsule_Import imports only the top-level package before Python 3.13 */
    PyObject *module = PyImport_ImportModule("bptt._threadpool");
    if (module == NULL)
        return -1;
    Py_DECREF(module);
    bptt_threadpool_entry =
        (const bptt_threadpool_api *)PyCapsule_Import(BPTT_THREADPOOL_CAPSULE, 0);
    return bptt_threadpool_entry ? 0 : -1;
}

/* fn(args, part, n_parts) for every part, on up to n_threads threads.
 * One thread or one part goes through the pool too: run_parts runs those
 * inline, and it sets the kernels' floating-point mode (fpmode.h). */
static void bptt_parallel(bptt_part_fn fn, void *args, int n_parts, int n_threads) {
    bptt_threadpool_entry->run_parts(fn, args, n_parts, n_threads);
}

#endif
