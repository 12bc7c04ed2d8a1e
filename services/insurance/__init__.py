"""Return-freight insurance (退货运费险): the return leg's freight claimed from the insurer."""
