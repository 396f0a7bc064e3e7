/*
 * agipd_h5.h - small HDF5 helpers shared by the adapters (raw reader,
 * constants loader).
 */
#ifndef AGIPD_H5_H
#define AGIPD_H5_H

#include <hdf5.h>

/* Does object obj live in the file fid itself (not reached through an
 * external link)?  Clears the HDF5 error stack; 0 when it cannot tell. */
int agipd_h5_in_file(hid_t obj, hid_t fid);

#endif
