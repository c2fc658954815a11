"""Python reference models of the eehw RTL modules in rtl_sim/hdl."""
