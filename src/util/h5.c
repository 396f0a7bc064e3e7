/*
 * h5.c - small HDF5 helpers shared by the adapters (agipd_h5.h).
 */
#include <hdf5.h>

#include "agipd_h5.h"

int agipd_h5_in_file(hid_t obj, hid_t fid)
{
	H5O_info_t a, b;
	int same = H5Oget_info2(obj, &a, H5O_INFO_BASIC) >= 0 && H5Oget_info2(fid, &b, H5O_INFO_BASIC) >= 0 &&
		   a.fileno == b.fileno;
	H5Eclear2(H5E_DEFAULT);
	return same;
}
