// C-simulation stand-in for Vitis HLS's ap_axi_sdata.h (not shipped with hls4ml's ap_types), on
// the g++ include path only: Vitis HLS uses its own header. Only the fields eehw's IPs use.
#ifndef EEHW_AP_AXI_SDATA_SIM_H
#define EEHW_AP_AXI_SDATA_SIM_H

#include "ap_int.h"

template <int D, int U, int TI, int TD> struct ap_axiu {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<(D + 7) / 8> strb;
    ap_uint<1> last;
};

#endif
